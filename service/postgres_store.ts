/**
 * The {@linkcode Store} on PostgreSQL (the `postgres` npm client, a pool of connections): the
 * store that several service replicas behind one address share. Each method is one statement or
 * one transaction. Races between replicas are settled by the database: conflicting inserts
 * (`ON CONFLICT`), conditional updates and deletes whose row count says who won, and row locks
 * taken in id order where a transaction touches many rows (result batches), so two replicas
 * writing overlapping batches wait for each other instead of deadlocking.
 *
 * @module
 */
import postgres from "postgres";
import { Buffer } from "node:buffer";
import {
  attemptExpiry,
  type AttemptRow,
  type AttemptStep,
  byKey,
  countAttempt,
  failAttempt,
  normalizeBatch,
  num,
  reserveSql,
  type Row,
  schema,
  str,
  strOrNull,
  toAttempt,
  toContainer,
  toDeviceCode,
  toEndpoint,
  toFunction,
  toGroupSummaries,
  toIdempotency,
  toOutbox,
  toSession,
  toTask,
  toTaskSummary,
  transitionsJson,
} from "./_store_rows.ts";
import type {
  AddTasksOptions,
  AttemptLimit,
  AttemptVerdict,
  ContainerRecord,
  DeviceCodeRecord,
  EndpointRecord,
  EndpointStatus,
  FunctionRecord,
  IdempotencyHold,
  IdempotencyRequest,
  IdempotencyReservation,
  NewTask,
  OutboxMessage,
  PurgeCounts,
  ReserveOptions,
  ResultBatch,
  SessionRecord,
  Store,
  TaskCompletion,
  TaskGroupSummary,
  TaskRecord,
  TaskSummary,
  UptimeSegment,
  UserRecord,
} from "./store.ts";

/** Options of {@linkcode PostgresStore.open}. */
export interface PostgresStoreOptions {
  /** Seconds a task and its result are kept. */
  taskTtlS: number;
  /** Most connections in the pool. */
  maxConnections: number;
  /** Seconds to wait for a connection. */
  connectTimeoutS: number;
}

/** Seconds an endpoint's online periods are kept after they end. */
const UPTIME_KEPT_S = 7 * 86400;

/** Any advisory lock id works, as long as every replica uses the same one. */
const SCHEMA_LOCK = 0x66756e63;

type Sql = postgres.Sql | postgres.TransactionSql;

/** The PostgreSQL store. */
export class PostgresStore implements Store {
  readonly kind = "postgres" as const;
  readonly #sql: postgres.Sql;
  readonly #taskTtlS: number;
  #closed: Promise<void> | undefined;

  private constructor(sql: postgres.Sql, taskTtlS: number) {
    this.#sql = sql;
    this.#taskTtlS = taskTtlS;
  }

  /** Connects to `url` and creates the tables that are missing. */
  static async open(url: string, options: PostgresStoreOptions): Promise<PostgresStore> {
    const sql = postgres(url, {
      max: options.maxConnections,
      connect_timeout: options.connectTimeoutS,
      idle_timeout: 60,
      // CREATE ... IF NOT EXISTS notices would go to stdout.
      onnotice: () => {},
      connection: { application_name: "funcx-service" },
    });
    // Replicas starting together would race on the catalog; the lock serializes them.
    const init = sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK}::bigint)`;
      await tx.unsafe(schema("DOUBLE PRECISION", "BYTEA")).simple();
    });
    // The client's own connect_timeout does not end a first connection to a host that never
    // answers (it retries), so the wait is bounded here.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${options.connectTimeoutS} s`)),
        options.connectTimeoutS * 1000,
      );
    });
    try {
      await Promise.race([init, timeout]);
    } catch (err) {
      init.catch(() => {});
      await sql.end({ timeout: 0 }).catch(() => {});
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return new PostgresStore(sql, options.taskTtlS);
  }

  async #one(query: Promise<Row[]>): Promise<Row | undefined> {
    return (await query)[0];
  }

  // ---- users, clients, tokens ----

  async ensureUser(name: string, passwordHash: string | null = null): Promise<UserRecord> {
    const sql = this.#sql;
    await sql`INSERT INTO users (id, name, password_hash, created_at)
      VALUES (${crypto.randomUUID()}, ${name}, ${passwordHash}, ${Date.now() / 1000})
      ON CONFLICT (name) DO NOTHING`;
    const row = (await this.#one(sql`SELECT id, name FROM users WHERE name = ${name}`))!;
    return { id: str(row, "id"), name: str(row, "name") };
  }

  async listUsers(): Promise<UserRecord[]> {
    const rows = await this.#sql`SELECT id, name FROM users ORDER BY name`;
    return rows.map((r) => ({ id: str(r, "id"), name: str(r, "name") }));
  }

  async addClient(id: string, userId: string, secretHash: string, name: string): Promise<void> {
    await this.#sql`INSERT INTO clients (id, user_id, secret_hash, name, created_at)
      VALUES (${id}, ${userId}, ${secretHash}, ${name}, ${Date.now() / 1000})`;
  }

  async getClient(id: string): Promise<{ userId: string; secretHash: string } | undefined> {
    const row = await this.#one(
      this.#sql`SELECT user_id, secret_hash FROM clients WHERE id = ${id}`,
    );
    return row ? { userId: str(row, "user_id"), secretHash: str(row, "secret_hash") } : undefined;
  }

  async addToken(
    hash: string,
    userId: string,
    clientId: string | null,
    expiresAt: number,
    kind: "access" | "refresh" = "access",
  ): Promise<void> {
    await this.#sql`INSERT INTO tokens (hash, user_id, client_id, kind, expires_at)
      VALUES (${hash}, ${userId}, ${clientId}, ${kind}, ${expiresAt})`;
  }

  async userForToken(
    hash: string,
    now: number,
    kind: "access" | "refresh" = "access",
  ): Promise<(UserRecord & { clientId: string | null }) | undefined> {
    const row = await this.#one(
      this.#sql`SELECT u.id, u.name, t.client_id FROM tokens t JOIN users u ON u.id = t.user_id
        WHERE t.hash = ${hash} AND t.expires_at > ${now} AND t.kind = ${kind}`,
    );
    return row
      ? { id: str(row, "id"), name: str(row, "name"), clientId: strOrNull(row, "client_id") }
      : undefined;
  }

  async deleteToken(hash: string): Promise<boolean> {
    return (await this.#sql`DELETE FROM tokens WHERE hash = ${hash}`).count > 0;
  }

  async setPassword(userId: string, passwordHash: string): Promise<void> {
    await this.#sql`UPDATE users SET password_hash = ${passwordHash} WHERE id = ${userId}`;
  }

  async userByName(
    name: string,
  ): Promise<(UserRecord & { passwordHash: string | null }) | undefined> {
    const row = await this.#one(
      this.#sql`SELECT id, name, password_hash FROM users WHERE name = ${name}`,
    );
    return row
      ? {
        id: str(row, "id"),
        name: str(row, "name"),
        passwordHash: strOrNull(row, "password_hash"),
      }
      : undefined;
  }

  async addDeviceCode(
    hash: string,
    userCode: string,
    clientId: string,
    expiresAt: number,
  ): Promise<void> {
    await this.#sql`INSERT INTO device_codes (hash, user_code, client_id, status, expires_at)
      VALUES (${hash}, ${userCode}, ${clientId}, 'pending', ${expiresAt})`;
  }

  async deviceCode(hash: string): Promise<DeviceCodeRecord | undefined> {
    const row = await this.#one(this.#sql`SELECT * FROM device_codes WHERE hash = ${hash}`);
    return row ? toDeviceCode(row) : undefined;
  }

  async deviceCodeByUserCode(userCode: string): Promise<DeviceCodeRecord | undefined> {
    const row = await this.#one(
      this.#sql`SELECT * FROM device_codes WHERE user_code = ${userCode}`,
    );
    return row ? toDeviceCode(row) : undefined;
  }

  async decideDeviceCode(
    hash: string,
    status: "approved" | "denied",
    userId: string | null,
  ): Promise<void> {
    await this.#sql`UPDATE device_codes SET status = ${status}, user_id = ${userId}
      WHERE hash = ${hash} AND status = 'pending'`;
  }

  async pollDeviceCode(hash: string, now: number): Promise<number> {
    return await this.#sql.begin(async (tx) => {
      const row = await this.#one(
        tx`SELECT last_poll FROM device_codes WHERE hash = ${hash} FOR UPDATE`,
      );
      if (!row) return 0;
      await tx`UPDATE device_codes SET last_poll = ${now} WHERE hash = ${hash}`;
      return num(row, "last_poll");
    });
  }

  async deleteDeviceCode(hash: string): Promise<boolean> {
    return (await this.#sql`DELETE FROM device_codes WHERE hash = ${hash}`).count > 0;
  }

  // ---- functions ----

  async addFunction(fn: FunctionRecord): Promise<void> {
    await this.#sql`INSERT INTO functions
      (id, owner_id, name, code, description, public, container_id, created_at)
      VALUES (${fn.id}, ${fn.ownerId}, ${fn.name}, ${fn.code}, ${fn.description},
        ${fn.public ? 1 : 0}, ${fn.containerId}, ${fn.createdAt})`;
  }

  async getFunction(id: string): Promise<FunctionRecord | undefined> {
    const row = await this.#one(this.#sql`SELECT * FROM functions WHERE id = ${id}`);
    return row ? toFunction(row) : undefined;
  }

  // ---- containers ----

  async addContainer(c: ContainerRecord): Promise<void> {
    await this.#sql`INSERT INTO containers
      (id, owner_id, name, description, type, location, created_at)
      VALUES (${c.id}, ${c.ownerId}, ${c.name}, ${c.description}, ${c.type}, ${c.location},
        ${c.createdAt})`;
  }

  async getContainer(id: string): Promise<ContainerRecord | undefined> {
    const row = await this.#one(this.#sql`SELECT * FROM containers WHERE id = ${id}`);
    return row ? toContainer(row) : undefined;
  }

  // ---- endpoints ----

  async upsertEndpoint(
    ep: Omit<EndpointRecord, "createdAt" | "lastRegisteredAt" | "lockedUntil" | "deleted">,
  ): Promise<boolean> {
    const now = Date.now() / 1000;
    const res = await this.#sql`INSERT INTO endpoints
      (id, owner_id, name, metadata, created_at, last_registered_at)
      VALUES (${ep.id}, ${ep.ownerId}, ${ep.name}, ${JSON.stringify(ep.metadata)}, ${now}, ${now})
      ON CONFLICT (id) DO UPDATE SET name = excluded.name, metadata = excluded.metadata,
        last_registered_at = excluded.last_registered_at
      WHERE endpoints.owner_id = excluded.owner_id AND endpoints.deleted = 0`;
    return res.count > 0;
  }

  async getEndpoint(id: string): Promise<EndpointRecord | undefined> {
    const row = await this.#one(this.#sql`SELECT * FROM endpoints WHERE id = ${id}`);
    return row ? toEndpoint(row) : undefined;
  }

  async listEndpoints(ownerId: string): Promise<EndpointRecord[]> {
    const rows = await this.#sql`SELECT * FROM endpoints
      WHERE owner_id = ${ownerId} AND deleted = 0 ORDER BY created_at, id`;
    return rows.map(toEndpoint);
  }

  async lockEndpoint(id: string, until: number): Promise<void> {
    await this.#sql`UPDATE endpoints SET locked_until = ${until} WHERE id = ${id}`;
  }

  async deleteEndpoint(id: string): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await tx`UPDATE endpoints SET deleted = 1 WHERE id = ${id}`;
      await tx`DELETE FROM endpoint_whitelist WHERE endpoint_id = ${id}`;
    });
  }

  async shareEndpoint(endpointId: string, userIds: readonly string[]): Promise<void> {
    if (userIds.length === 0) return;
    await this.#sql`INSERT INTO endpoint_users (endpoint_id, user_id)
      SELECT ${endpointId}::text, u FROM jsonb_array_elements_text(${
      this.#sql.json([...userIds])
    }) u
      ON CONFLICT DO NOTHING`;
  }

  async unshareEndpoint(endpointId: string, userId: string): Promise<boolean> {
    const res = await this.#sql`DELETE FROM endpoint_users
      WHERE endpoint_id = ${endpointId} AND user_id = ${userId}`;
    return res.count > 0;
  }

  async isSharedWith(endpointId: string, userId: string): Promise<boolean> {
    const row = await this.#one(this.#sql`SELECT 1 AS shared FROM endpoint_users
      WHERE endpoint_id = ${endpointId} AND user_id = ${userId}`);
    return row !== undefined;
  }

  async sharedWith(endpointId: string): Promise<string[]> {
    const rows = await this.#sql`SELECT u.name FROM endpoint_users e
      JOIN users u ON u.id = e.user_id WHERE e.endpoint_id = ${endpointId} ORDER BY u.name`;
    return rows.map((r) => str(r, "name"));
  }

  async whitelist(endpointId: string): Promise<string[]> {
    const rows = await this.#sql`SELECT function_id FROM endpoint_whitelist
      WHERE endpoint_id = ${endpointId} ORDER BY function_id`;
    return rows.map((r) => str(r, "function_id"));
  }

  async addToWhitelist(endpointId: string, functionIds: readonly string[]): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await this.#lockEndpointRow(tx, endpointId);
      await this.#insertWhitelist(tx, endpointId, functionIds);
    });
  }

  async replaceWhitelist(endpointId: string, functionIds: readonly string[]): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await this.#lockEndpointRow(tx, endpointId);
      await tx`DELETE FROM endpoint_whitelist WHERE endpoint_id = ${endpointId}`;
      await this.#insertWhitelist(tx, endpointId, functionIds);
    });
  }

  /** Serializes allow-list changes of one endpoint: a replace is never mixed with another. */
  async #lockEndpointRow(tx: Sql, endpointId: string): Promise<void> {
    await tx`SELECT id FROM endpoints WHERE id = ${endpointId} FOR UPDATE`;
  }

  async #insertWhitelist(tx: Sql, endpointId: string, functionIds: readonly string[]) {
    if (functionIds.length === 0) return;
    await tx`INSERT INTO endpoint_whitelist (endpoint_id, function_id)
      SELECT ${endpointId}::text, f FROM jsonb_array_elements_text(${tx.json([...functionIds])}) f
      ON CONFLICT DO NOTHING`;
  }

  async removeFromWhitelist(endpointId: string, functionId: string): Promise<boolean> {
    const res = await this.#sql`DELETE FROM endpoint_whitelist
      WHERE endpoint_id = ${endpointId} AND function_id = ${functionId}`;
    return res.count > 0;
  }

  async endpointStatus(endpointId: string, now: number): Promise<EndpointStatus | undefined> {
    const row = await this.#one(this.#sql`SELECT state, expires_at FROM endpoint_status
      WHERE endpoint_id = ${endpointId} AND expires_at > ${now}`);
    return row
      ? { endpointId, state: JSON.parse(str(row, "state")), expiresAt: num(row, "expires_at") }
      : undefined;
  }

  // ---- task groups and tasks ----

  async taskGroupOwner(id: string): Promise<string | undefined> {
    const row = await this.#one(this.#sql`SELECT owner_id FROM task_groups WHERE id = ${id}`);
    return row ? str(row, "owner_id") : undefined;
  }

  async setResultQueue(groupId: string, queue: string): Promise<void> {
    await this.#sql`UPDATE task_groups SET result_queue = ${queue} WHERE id = ${groupId}`;
  }

  async resultQueueOf(taskId: string): Promise<string | undefined> {
    return (await this.resultQueuesOf([taskId])).get(taskId);
  }

  async resultQueuesOf(taskIds: readonly string[]): Promise<Map<string, string>> {
    if (taskIds.length === 0) return new Map();
    const rows = await this.#sql`SELECT t.id, g.result_queue FROM tasks t
      JOIN task_groups g ON g.id = t.group_id
      WHERE t.id IN (SELECT jsonb_array_elements_text(${this.#sql.json([...taskIds])}))
        AND g.result_queue IS NOT NULL`;
    return new Map(rows.map((r) => [str(r, "id"), str(r, "result_queue")]));
  }

  async taskGroupTasks(groupId: string): Promise<string[]> {
    const rows = await this.#sql`SELECT id FROM tasks WHERE group_id = ${groupId}
      ORDER BY created_at, id`;
    return rows.map((r) => str(r, "id"));
  }

  async addTasks(
    ownerId: string,
    groupId: string,
    tasks: readonly NewTask[],
    options: AddTasksOptions = {},
  ): Promise<NewTask[] | false> {
    const now = Date.now() / 1000;
    const expires = now + this.#taskTtlS;
    return await this.#sql.begin(async (tx) => {
      await tx`INSERT INTO task_groups (id, owner_id, created_at)
        VALUES (${groupId}, ${ownerId}, ${now}) ON CONFLICT (id) DO NOTHING`;
      const owner = await this.#one(
        tx`SELECT owner_id FROM task_groups WHERE id = ${groupId}`,
      );
      if (!owner || str(owner, "owner_id") !== ownerId) return false;
      if (options.resultQueue !== undefined) {
        await tx`UPDATE task_groups SET result_queue = ${options.resultQueue}
          WHERE id = ${groupId}`;
      }
      if (tasks.length === 0) return [];
      const rows = tasks.map((t) => ({ id: t.id, f: t.functionId, e: t.endpointId }));
      const fresh = new Set(
        (await tx`INSERT INTO tasks (id, owner_id, group_id, function_id, endpoint_id, status,
            created_at, expires_at)
          SELECT v.id, ${ownerId}::text, ${groupId}::text, v.f, v.e, 'waiting-for-ep',
            ${now}::float8, ${expires}::float8
          FROM jsonb_to_recordset(${tx.json(rows)}) AS v(id text, f text, e text)
          ON CONFLICT (id) DO NOTHING RETURNING id`).map((r) => str(r, "id")),
      );
      const inserted = tasks.filter((t) => fresh.has(t.id));
      const messages = inserted.filter((t) => t.message !== undefined);
      if (messages.length > 0) {
        const rows = messages.map((t) => ({
          id: t.id,
          e: t.endpointId,
          b: Buffer.from(t.message!.buffer, t.message!.byteOffset, t.message!.byteLength)
            .toString("base64"),
        }));
        await tx`INSERT INTO outbox (task_id, endpoint_id, body, created_at, lease_until)
          SELECT v.id, v.e, decode(v.b, 'base64'), ${now}::float8, ${
          options.leaseUntil ?? 0
        }::float8
          FROM jsonb_to_recordset(${tx.json(rows)}) AS v(id text, e text, b text)
          ON CONFLICT (task_id) DO NOTHING`;
      }
      return inserted;
    });
  }

  async claimOutbox(now: number, leaseUntil: number, limit: number): Promise<OutboxMessage[]> {
    const rows = await this.#sql`UPDATE outbox SET lease_until = ${leaseUntil}
      WHERE task_id IN (SELECT task_id FROM outbox WHERE lease_until < ${now}
        ORDER BY created_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
      RETURNING task_id, endpoint_id, body, created_at`;
    return [...rows].sort((a, b) => num(a, "created_at") - num(b, "created_at")).map(toOutbox);
  }

  async releaseOutbox(taskIds: readonly string[]): Promise<void> {
    if (taskIds.length === 0) return;
    await this.#sql`UPDATE outbox SET lease_until = 0
      WHERE task_id IN (SELECT jsonb_array_elements_text(${this.#sql.json([...taskIds])}))`;
  }

  async deleteOutbox(taskIds: readonly string[]): Promise<void> {
    if (taskIds.length === 0) return;
    await this.#sql`DELETE FROM outbox
      WHERE task_id IN (SELECT jsonb_array_elements_text(${this.#sql.json([...taskIds])}))`;
  }

  async outboxSize(): Promise<number> {
    return num((await this.#sql`SELECT count(*)::int AS n FROM outbox`)[0]!, "n");
  }

  async failTasks(ids: readonly string[], code: string, exception: string): Promise<void> {
    if (ids.length === 0) return;
    const sorted = [...ids].sort();
    await this.#sql.begin(async (tx) => {
      await this.#lockTasks(tx, sorted);
      await tx`UPDATE tasks SET status = 'failed', exception = ${exception},
          error_code = ${code}, completion_t = ${Date.now() / 1000}
        WHERE id IN (SELECT jsonb_array_elements_text(${tx.json(sorted)}))
          AND status NOT IN ('success', 'failed')`;
    });
  }

  /** Locks task rows in the order given (sorted by the caller), the order every writer uses. */
  async #lockTasks(tx: Sql, sortedIds: readonly string[]): Promise<void> {
    await tx`SELECT t.id FROM tasks t
      JOIN jsonb_array_elements_text(${tx.json([...sortedIds])}) AS v(id) ON v.id = t.id
      ORDER BY t.id FOR UPDATE OF t`;
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const row = await this.#one(this.#sql`SELECT * FROM tasks WHERE id = ${id}`);
    return row ? toTask(row) : undefined;
  }

  async completeTasks(completions: readonly TaskCompletion[]): Promise<number> {
    return await this.applyResults({ updates: [], completions });
  }

  async updateStatuses(updates: ReadonlyArray<{ taskId: string; status: string }>): Promise<void> {
    await this.applyResults({ updates, completions: [] });
  }

  async applyResults(batch: ResultBatch): Promise<number> {
    const b = normalizeBatch(batch);
    if (b.updates.length + b.completions.length + b.statuses.length === 0) return 0;
    const ids = [...new Set([...b.updates, ...b.completions].map((x) => x.taskId))].sort();
    return await this.#sql.begin(async (tx) => {
      if (b.statuses.length > 0) {
        const reports = b.statuses.map((s) => ({
          endpoint_id: s.endpointId,
          state: s.state,
          expires_at: s.expiresAt,
        }));
        await tx`INSERT INTO endpoint_status (endpoint_id, state, expires_at)
          SELECT v.endpoint_id, v.state, v.expires_at FROM jsonb_to_recordset(${tx.json(reports)})
            AS v(endpoint_id text, state text, expires_at double precision)
          ON CONFLICT (endpoint_id) DO UPDATE SET state = excluded.state,
            expires_at = excluded.expires_at`;
        await this.#recordUptime(tx, b.statuses);
      }
      if (ids.length === 0) return 0;
      await this.#lockTasks(tx, ids);
      if (b.updates.length > 0) {
        const moves = b.updates.map((u) => ({ id: u.taskId, status: u.status }));
        await tx`UPDATE tasks t SET status = v.status
          FROM jsonb_to_recordset(${tx.json(moves)}) AS v(id text, status text)
          WHERE t.id = v.id AND t.status NOT IN ('success', 'failed')`;
      }
      if (b.completions.length === 0) return 0;
      const rows = b.completions.map((c) => {
        const ok = c.status === "success";
        return {
          id: c.taskId,
          status: c.status,
          result: ok ? c.data : null,
          exception: ok ? null : c.data,
          error_code: c.errorCode,
          completion_t: c.completionT,
          transitions: transitionsJson(c.transitions),
        };
      });
      const res = await tx`UPDATE tasks t SET status = v.status, result = v.result,
          exception = v.exception, error_code = v.error_code, completion_t = v.completion_t,
          transitions = v.transitions
        FROM jsonb_to_recordset(${tx.json(rows)}) AS v(id text, status text, result text,
          exception text, error_code text, completion_t double precision, transitions text)
        WHERE t.id = v.id AND t.status NOT IN ('success', 'failed')`;
      return res.count;
    });
  }

  /** Extends each endpoint's current online period, or starts one. */
  async #recordUptime(
    tx: Sql,
    statuses: ReadonlyArray<{ endpointId: string; expiresAt: number }>,
  ): Promise<void> {
    const now = Date.now() / 1000;
    for (const s of statuses) {
      const res = await tx`UPDATE endpoint_uptime SET last_report_at = ${now},
          until = ${s.expiresAt}
        WHERE endpoint_id = ${s.endpointId} AND until >= ${now} AND since = (
          SELECT max(since) FROM endpoint_uptime WHERE endpoint_id = ${s.endpointId})`;
      if (res.count === 0 && s.expiresAt > now) {
        await tx`INSERT INTO endpoint_uptime (endpoint_id, since, last_report_at, until)
          VALUES (${s.endpointId}, ${now}, ${now}, ${s.expiresAt}) ON CONFLICT DO NOTHING`;
      }
    }
  }

  // ---- dashboard sessions and sign-in throttling ----

  async addSession(hash: string, userId: string, csrf: string, expiresAt: number): Promise<void> {
    await this.#sql`INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at)
      VALUES (${hash}, ${userId}, ${csrf}, ${Date.now() / 1000}, ${expiresAt})`;
  }

  async sessionFor(hash: string, now: number): Promise<SessionRecord | undefined> {
    const row = await this.#one(this.#sql`SELECT u.id, u.name, s.csrf, s.expires_at
      FROM sessions s JOIN users u ON u.id = s.user_id
      WHERE s.hash = ${hash} AND s.expires_at > ${now}`);
    return row ? toSession(row) : undefined;
  }

  async deleteSession(hash: string): Promise<boolean> {
    return (await this.#sql`DELETE FROM sessions WHERE hash = ${hash}`).count > 0;
  }

  /** Reads each key's row locked for the transaction (made first when missing), in key order. */
  async #attemptRows(tx: Sql, limits: readonly AttemptLimit[]) {
    const out: Array<AttemptRow | undefined> = [];
    for (const limit of limits) {
      await tx`INSERT INTO sign_in_attempts (attempt_key, count, window_start, locked_until,
          expires_at) VALUES (${limit.key}, 0, 0, 0, 0) ON CONFLICT DO NOTHING`;
      const row = await this.#one(tx`SELECT * FROM sign_in_attempts
        WHERE attempt_key = ${limit.key} FOR UPDATE`);
      // A row made just now (window_start 0) stands for no row.
      out.push(row && num(row, "window_start") > 0 ? toAttempt(row) : undefined);
    }
    return out;
  }

  async #writeAttempt(tx: Sql, limit: AttemptLimit, row: AttemptRow): Promise<void> {
    await tx`UPDATE sign_in_attempts SET count = ${row.count}, window_start = ${row.windowStart},
        locked_until = ${row.lockedUntil}, expires_at = ${attemptExpiry(row, limit)}
      WHERE attempt_key = ${limit.key}`;
  }

  /** Applies `step` to each limit's row (locked) in one transaction, in key order. */
  async #attempt(
    limits: readonly AttemptLimit[],
    now: number,
    step: AttemptStep,
  ): Promise<AttemptVerdict[]> {
    const sorted = byKey(limits);
    return await this.#sql.begin(async (tx) => {
      const rows = await this.#attemptRows(tx, sorted);
      const out: AttemptVerdict[] = [];
      for (const [i, limit] of sorted.entries()) {
        const { row, verdict } = step(rows[i], limit, now);
        if (row) await this.#writeAttempt(tx, limit, row);
        out.push(verdict);
      }
      return out;
    });
  }

  async countSignIn(limits: readonly AttemptLimit[], now: number): Promise<AttemptVerdict[]> {
    return await this.#attempt(limits, now, countAttempt);
  }

  async failSignIn(limits: readonly AttemptLimit[], now: number): Promise<AttemptVerdict[]> {
    return await this.#attempt(limits, now, failAttempt);
  }

  async passSignIn(key: string): Promise<void> {
    await this.#sql`DELETE FROM sign_in_attempts WHERE attempt_key = ${key}`;
  }

  // ---- dashboard reads ----

  async listFunctions(ownerId: string, limit: number): Promise<FunctionRecord[]> {
    const rows = await this.#sql`SELECT * FROM functions WHERE owner_id = ${ownerId}
      ORDER BY created_at DESC, id LIMIT ${limit}`;
    return rows.map(toFunction);
  }

  async listTaskGroups(ownerId: string, limit: number): Promise<TaskGroupSummary[]> {
    return toGroupSummaries(
      await this.#sql`SELECT g.id, g.created_at, t.status, count(*)::int AS n FROM task_groups g
        JOIN tasks t ON t.group_id = g.id
        WHERE g.id IN (SELECT g2.id FROM task_groups g2 WHERE g2.owner_id = ${ownerId}
          AND EXISTS (SELECT 1 FROM tasks t2 WHERE t2.group_id = g2.id)
          ORDER BY g2.created_at DESC LIMIT ${limit})
        GROUP BY g.id, g.created_at, t.status ORDER BY g.created_at DESC, g.id`,
    );
  }

  async taskGroupSummary(groupId: string): Promise<TaskGroupSummary | undefined> {
    return toGroupSummaries(
      await this.#sql`SELECT g.id, g.created_at, t.status, count(t.id)::int AS n
        FROM task_groups g LEFT JOIN tasks t ON t.group_id = g.id WHERE g.id = ${groupId}
        GROUP BY g.id, g.created_at, t.status`,
    )[0];
  }

  async listGroupTasks(groupId: string, limit: number): Promise<TaskSummary[]> {
    const rows = await this.#sql`SELECT id, function_id, endpoint_id, status, created_at,
        completion_t FROM tasks WHERE group_id = ${groupId} ORDER BY created_at, id
      LIMIT ${limit}`;
    return rows.map(toTaskSummary);
  }

  async waitingTasks(endpointIds: readonly string[]): Promise<Map<string, number>> {
    if (endpointIds.length === 0) return new Map();
    const rows = await this.#sql`SELECT endpoint_id, count(*)::int AS n FROM tasks
      WHERE status = 'waiting-for-ep' AND endpoint_id IN (
        SELECT jsonb_array_elements_text(${this.#sql.json([...endpointIds])}))
      GROUP BY endpoint_id`;
    return new Map(rows.map((r) => [str(r, "endpoint_id"), num(r, "n")]));
  }

  async endpointUptime(endpointId: string, since: number): Promise<UptimeSegment[]> {
    const rows = await this.#sql`SELECT since, last_report_at, until FROM endpoint_uptime
      WHERE endpoint_id = ${endpointId} AND until > ${since} ORDER BY since`;
    return rows.map((r) => ({
      since: num(r, "since"),
      lastReportAt: num(r, "last_report_at"),
      until: num(r, "until"),
    }));
  }

  // ---- idempotency keys ----

  async reserveIdempotencyKey(
    request: IdempotencyRequest,
    options: ReserveOptions,
  ): Promise<IdempotencyReservation> {
    const token = crypto.randomUUID();
    const { now } = options;
    const params = [
      request.userId,
      request.key,
      request.method,
      request.path,
      request.requestHash,
      token,
      now,
      now + options.leaseS,
      now + options.ttlS,
    ];
    // The row can vanish between the conflicting insert and the read (its attempt gave it up):
    // then the insert is tried again.
    for (let attempt = 0;; attempt++) {
      const won = await this.#one(this.#sql.unsafe(reserveSql((i) => `$${i}`), params));
      if (won && str(won, "token") === token) return { reserved: true, token };
      const row = await this.#one(this.#sql`SELECT * FROM idempotency_keys
        WHERE user_id = ${request.userId} AND idem_key = ${request.key}`);
      if (row) return { reserved: false, existing: toIdempotency(row) };
      if (attempt >= 5) {
        throw new Error(`Cannot reserve idempotency key "${request.key}": it keeps changing`);
      }
    }
  }

  async finishIdempotencyKey(
    hold: IdempotencyHold,
    response: { status: number; body: string },
  ): Promise<boolean> {
    const res = await this.#sql`UPDATE idempotency_keys SET state = 'done',
        response_status = ${response.status}, response_body = ${response.body}
      WHERE user_id = ${hold.userId} AND idem_key = ${hold.key} AND token = ${hold.token}
        AND state = 'in_progress'`;
    return res.count > 0;
  }

  async releaseIdempotencyKey(hold: IdempotencyHold): Promise<void> {
    await this.#sql`DELETE FROM idempotency_keys WHERE user_id = ${hold.userId}
      AND idem_key = ${hold.key} AND token = ${hold.token} AND state = 'in_progress'`;
  }

  async purgeExpired(now: number = Date.now() / 1000): Promise<PurgeCounts> {
    return await this.#sql.begin(async (tx) => {
      await tx`DELETE FROM sessions WHERE expires_at <= ${now}`;
      await tx`DELETE FROM sign_in_attempts WHERE expires_at <= ${now}`;
      await tx`DELETE FROM endpoint_uptime WHERE until <= ${now - UPTIME_KEPT_S}`;
      return {
        tasks: (await tx`DELETE FROM tasks WHERE expires_at <= ${now}`).count,
        tokens: (await tx`DELETE FROM tokens WHERE expires_at <= ${now}`).count,
        deviceCodes: (await tx`DELETE FROM device_codes WHERE expires_at <= ${now}`).count,
        idempotencyKeys: (await tx`DELETE FROM idempotency_keys WHERE expires_at <= ${now}`).count,
      };
    });
  }

  close(): Promise<void> {
    this.#closed ??= this.#sql.end({ timeout: 5 });
    return this.#closed;
  }
}
