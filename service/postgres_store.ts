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
import type postgres from "postgres";
import { Buffer } from "node:buffer";
import { connectPostgres, type PostgresConnectOptions } from "./_postgres_connect.ts";
import { type Param, SqlStore, UPTIME_KEPT_S } from "./_sql_store.ts";
import {
  attemptExpiry,
  type AttemptRow,
  type AttemptStep,
  byKey,
  countAttempt,
  failAttempt,
  toAttempt,
} from "./_sign_in_attempts.ts";
import {
  normalizeBatch,
  num,
  type Row,
  str,
  toIdempotency,
  toOutbox,
  transitionsJson,
} from "./_store_rows.ts";
import { reserveParams, reserveSql } from "./_store_schema.ts";
import type {
  AddTasksOptions,
  AttemptLimit,
  AttemptVerdict,
  IdempotencyRequest,
  IdempotencyReservation,
  NewTask,
  OutboxMessage,
  PurgeCounts,
  ReserveOptions,
  ResultBatch,
  Store,
} from "./store.ts";

/** Options of {@linkcode PostgresStore.open}. */
export interface PostgresStoreOptions extends PostgresConnectOptions {
  /** Seconds a task and its result are kept. */
  taskTtlS: number;
}

type Sql = postgres.Sql | postgres.TransactionSql;

/** The shared statements' `?` placeholders as PostgreSQL's `$1`, `$2`, ... (none is quoted). */
function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

/** The PostgreSQL store: the shared statements, and its own transactions, locks and bulk writes. */
export class PostgresStore extends SqlStore implements Store {
  readonly kind = "postgres" as const;
  readonly #sql: postgres.Sql;
  readonly #taskTtlS: number;
  #closed: Promise<void> | undefined;

  private constructor(sql: postgres.Sql, taskTtlS: number) {
    super();
    this.#sql = sql;
    this.#taskTtlS = taskTtlS;
  }

  /** Connects to `url` and creates the tables that are missing. */
  static async open(url: string, options: PostgresStoreOptions): Promise<PostgresStore> {
    return new PostgresStore(await connectPostgres(url, options), options.taskTtlS);
  }

  async #one(query: Promise<Row[]>): Promise<Row | undefined> {
    return (await query)[0];
  }

  // Prepared like the client's tagged templates, which the rest of this store uses.
  protected override async all(sql: string, params: readonly Param[] = []): Promise<Row[]> {
    return await this.#sql.unsafe(numbered(sql), [...params], { prepare: true });
  }

  protected override async run(sql: string, params: readonly Param[] = []): Promise<number> {
    return (await this.#sql.unsafe(numbered(sql), [...params], { prepare: true })).count;
  }

  // ---- device codes ----

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

  // ---- endpoints ----

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

  // ---- task groups and tasks ----

  async resultQueuesOf(taskIds: readonly string[]): Promise<Map<string, string>> {
    if (taskIds.length === 0) return new Map();
    const rows = await this.#sql`SELECT t.id, g.result_queue FROM tasks t
      JOIN task_groups g ON g.id = t.group_id
      WHERE t.id IN (SELECT jsonb_array_elements_text(${this.#sql.json([...taskIds])}))
        AND g.result_queue IS NOT NULL`;
    return new Map(rows.map((r) => [str(r, "id"), str(r, "result_queue")]));
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
      const rows = tasks.map((t) => ({
        id: t.id,
        f: t.functionId,
        e: t.endpointId,
        r: t.resourceSpecification ? JSON.stringify(t.resourceSpecification) : null,
      }));
      const fresh = new Set(
        (await tx`INSERT INTO tasks (id, owner_id, group_id, function_id, endpoint_id, status,
            created_at, expires_at, resource_specification)
          SELECT v.id, ${ownerId}::text, ${groupId}::text, v.f, v.e, 'waiting-for-ep',
            ${now}::float8, ${expires}::float8, v.r
          FROM jsonb_to_recordset(${tx.json(rows)}) AS v(id text, f text, e text, r text)
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

  // ---- dashboard reads ----

  async waitingTasks(endpointIds: readonly string[]): Promise<Map<string, number>> {
    if (endpointIds.length === 0) return new Map();
    const rows = await this.#sql`SELECT endpoint_id, count(*)::int AS n FROM tasks
      WHERE status = 'waiting-for-ep' AND endpoint_id IN (
        SELECT jsonb_array_elements_text(${this.#sql.json([...endpointIds])}))
      GROUP BY endpoint_id`;
    return new Map(rows.map((r) => [str(r, "endpoint_id"), num(r, "n")]));
  }

  // ---- idempotency keys ----

  async reserveIdempotencyKey(
    request: IdempotencyRequest,
    options: ReserveOptions,
  ): Promise<IdempotencyReservation> {
    const token = crypto.randomUUID();
    const params = reserveParams(request, token, options);
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
