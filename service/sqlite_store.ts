/**
 * The {@linkcode Store} on SQLite (`node:sqlite`, WAL mode): the embedded default, one file next
 * to one service process. Statements run synchronously inside each async method, so a method is
 * atomic with respect to every other call in the process; transactions (`BEGIN IMMEDIATE`) make
 * it so for other processes on the same file too.
 *
 * @module
 */
// The methods are async to fulfil the Store interface; node:sqlite itself is synchronous.
// deno-lint-ignore-file require-await
import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  attemptExpiry,
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

/** Seconds an endpoint's online periods are kept after they end. */
const UPTIME_KEPT_S = 7 * 86400;

/** Options of {@linkcode SqliteStore.open}. */
export interface SqliteStoreOptions {
  /** Seconds a task and its result are kept. */
  taskTtlS: number;
}

/** The SQLite store. */
export class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  readonly #db: DatabaseSync;
  readonly #taskTtlS: number;
  readonly #stmts = new Map<string, StatementSync>();
  #closed = false;

  private constructor(db: DatabaseSync, taskTtlS: number) {
    this.#db = db;
    this.#taskTtlS = taskTtlS;
  }

  /** Opens (and creates) the store at `path`; `":memory:"` for a private in-memory one. */
  static open(path: string, options: SqliteStoreOptions): SqliteStore {
    const db = new DatabaseSync(path);
    try {
      db.exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
      );
      db.exec(schema("REAL"));
    } catch (err) {
      db.close();
      throw err;
    }
    return new SqliteStore(db, options.taskTtlS);
  }

  #stmt(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  #tx<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  #changes(sql: string, ...params: Array<string | number | null>): number {
    return Number(this.#stmt(sql).run(...params).changes);
  }

  // ---- users, clients, tokens ----

  async ensureUser(name: string, passwordHash: string | null = null): Promise<UserRecord> {
    this.#stmt(
      "INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (name) DO NOTHING",
    ).run(crypto.randomUUID(), name, passwordHash, Date.now() / 1000);
    const row = this.#stmt("SELECT id, name FROM users WHERE name = ?").get(name)!;
    return { id: str(row, "id"), name: str(row, "name") };
  }

  async listUsers(): Promise<UserRecord[]> {
    return this.#stmt("SELECT id, name FROM users ORDER BY name").all().map((r) => ({
      id: str(r, "id"),
      name: str(r, "name"),
    }));
  }

  async addClient(id: string, userId: string, secretHash: string, name: string): Promise<void> {
    this.#stmt(
      "INSERT INTO clients (id, user_id, secret_hash, name, created_at) VALUES (?, ?, ?, ?, ?)",
    ).run(id, userId, secretHash, name, Date.now() / 1000);
  }

  async getClient(id: string): Promise<{ userId: string; secretHash: string } | undefined> {
    const row = this.#stmt("SELECT user_id, secret_hash FROM clients WHERE id = ?").get(id);
    return row ? { userId: str(row, "user_id"), secretHash: str(row, "secret_hash") } : undefined;
  }

  async addToken(
    hash: string,
    userId: string,
    clientId: string | null,
    expiresAt: number,
    kind: "access" | "refresh" = "access",
  ): Promise<void> {
    this.#stmt(
      "INSERT INTO tokens (hash, user_id, client_id, kind, expires_at) VALUES (?, ?, ?, ?, ?)",
    ).run(hash, userId, clientId, kind, expiresAt);
  }

  async userForToken(
    hash: string,
    now: number,
    kind: "access" | "refresh" = "access",
  ): Promise<(UserRecord & { clientId: string | null }) | undefined> {
    const row = this.#stmt(
      "SELECT u.id, u.name, t.client_id FROM tokens t JOIN users u ON u.id = t.user_id " +
        "WHERE t.hash = ? AND t.expires_at > ? AND t.kind = ?",
    ).get(hash, now, kind);
    return row
      ? { id: str(row, "id"), name: str(row, "name"), clientId: strOrNull(row, "client_id") }
      : undefined;
  }

  async deleteToken(hash: string): Promise<boolean> {
    return this.#changes("DELETE FROM tokens WHERE hash = ?", hash) > 0;
  }

  async setPassword(userId: string, passwordHash: string): Promise<void> {
    this.#stmt("UPDATE users SET password_hash = ? WHERE id = ?").run(passwordHash, userId);
  }

  async userByName(
    name: string,
  ): Promise<(UserRecord & { passwordHash: string | null }) | undefined> {
    const row = this.#stmt("SELECT id, name, password_hash FROM users WHERE name = ?").get(name);
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
    this.#stmt(
      "INSERT INTO device_codes (hash, user_code, client_id, status, expires_at) " +
        "VALUES (?, ?, ?, 'pending', ?)",
    ).run(hash, userCode, clientId, expiresAt);
  }

  async deviceCode(hash: string): Promise<DeviceCodeRecord | undefined> {
    const row = this.#stmt("SELECT * FROM device_codes WHERE hash = ?").get(hash);
    return row ? toDeviceCode(row) : undefined;
  }

  async deviceCodeByUserCode(userCode: string): Promise<DeviceCodeRecord | undefined> {
    const row = this.#stmt("SELECT * FROM device_codes WHERE user_code = ?").get(userCode);
    return row ? toDeviceCode(row) : undefined;
  }

  async decideDeviceCode(
    hash: string,
    status: "approved" | "denied",
    userId: string | null,
  ): Promise<void> {
    this.#stmt(
      "UPDATE device_codes SET status = ?, user_id = ? WHERE hash = ? AND status = 'pending'",
    ).run(status, userId, hash);
  }

  async pollDeviceCode(hash: string, now: number): Promise<number> {
    return this.#tx(() => {
      const row = this.#stmt("SELECT last_poll FROM device_codes WHERE hash = ?").get(hash);
      this.#stmt("UPDATE device_codes SET last_poll = ? WHERE hash = ?").run(now, hash);
      return row ? num(row, "last_poll") : 0;
    });
  }

  async deleteDeviceCode(hash: string): Promise<boolean> {
    return this.#changes("DELETE FROM device_codes WHERE hash = ?", hash) > 0;
  }

  // ---- functions ----

  async addFunction(fn: FunctionRecord): Promise<void> {
    this.#stmt(
      "INSERT INTO functions (id, owner_id, name, code, description, public, container_id, " +
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ).run(
      fn.id,
      fn.ownerId,
      fn.name,
      fn.code,
      fn.description,
      fn.public ? 1 : 0,
      fn.containerId,
      fn.createdAt,
    );
  }

  async getFunction(id: string): Promise<FunctionRecord | undefined> {
    const row = this.#stmt("SELECT * FROM functions WHERE id = ?").get(id);
    return row ? toFunction(row) : undefined;
  }

  // ---- containers ----

  async addContainer(c: ContainerRecord): Promise<void> {
    this.#stmt(
      "INSERT INTO containers (id, owner_id, name, description, type, location, created_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
    ).run(c.id, c.ownerId, c.name, c.description, c.type, c.location, c.createdAt);
  }

  async getContainer(id: string): Promise<ContainerRecord | undefined> {
    const row = this.#stmt("SELECT * FROM containers WHERE id = ?").get(id);
    return row ? toContainer(row) : undefined;
  }

  // ---- endpoints ----

  async upsertEndpoint(
    ep: Omit<EndpointRecord, "createdAt" | "lastRegisteredAt" | "lockedUntil" | "deleted">,
  ): Promise<boolean> {
    const now = Date.now() / 1000;
    return this.#changes(
      "INSERT INTO endpoints (id, owner_id, name, metadata, created_at, last_registered_at) " +
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, " +
        "metadata = excluded.metadata, last_registered_at = excluded.last_registered_at " +
        "WHERE endpoints.owner_id = excluded.owner_id AND endpoints.deleted = 0",
      ep.id,
      ep.ownerId,
      ep.name,
      JSON.stringify(ep.metadata),
      now,
      now,
    ) > 0;
  }

  async getEndpoint(id: string): Promise<EndpointRecord | undefined> {
    const row = this.#stmt("SELECT * FROM endpoints WHERE id = ?").get(id);
    return row ? toEndpoint(row) : undefined;
  }

  async listEndpoints(ownerId: string): Promise<EndpointRecord[]> {
    return this.#stmt(
      "SELECT * FROM endpoints WHERE owner_id = ? AND deleted = 0 ORDER BY created_at, id",
    ).all(ownerId).map(toEndpoint);
  }

  async lockEndpoint(id: string, until: number): Promise<void> {
    this.#stmt("UPDATE endpoints SET locked_until = ? WHERE id = ?").run(until, id);
  }

  async deleteEndpoint(id: string): Promise<void> {
    this.#tx(() => {
      this.#stmt("UPDATE endpoints SET deleted = 1 WHERE id = ?").run(id);
      this.#stmt("DELETE FROM endpoint_whitelist WHERE endpoint_id = ?").run(id);
    });
  }

  async shareEndpoint(endpointId: string, userIds: readonly string[]): Promise<void> {
    this.#tx(() => {
      const ins = this.#stmt(
        "INSERT INTO endpoint_users (endpoint_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
      );
      for (const u of userIds) ins.run(endpointId, u);
    });
  }

  async unshareEndpoint(endpointId: string, userId: string): Promise<boolean> {
    return this.#changes(
      "DELETE FROM endpoint_users WHERE endpoint_id = ? AND user_id = ?",
      endpointId,
      userId,
    ) > 0;
  }

  async isSharedWith(endpointId: string, userId: string): Promise<boolean> {
    return this.#stmt("SELECT 1 FROM endpoint_users WHERE endpoint_id = ? AND user_id = ?")
      .get(endpointId, userId) !== undefined;
  }

  async sharedWith(endpointId: string): Promise<string[]> {
    return this.#stmt(
      "SELECT u.name FROM endpoint_users e JOIN users u ON u.id = e.user_id " +
        "WHERE e.endpoint_id = ? ORDER BY u.name",
    ).all(endpointId).map((r) => str(r, "name"));
  }

  async whitelist(endpointId: string): Promise<string[]> {
    return this.#whitelist(endpointId);
  }

  #whitelist(endpointId: string): string[] {
    return this.#stmt(
      "SELECT function_id FROM endpoint_whitelist WHERE endpoint_id = ? ORDER BY function_id",
    ).all(endpointId).map((r) => str(r, "function_id"));
  }

  async addToWhitelist(endpointId: string, functionIds: readonly string[]): Promise<void> {
    this.#tx(() => this.#insertWhitelist(endpointId, functionIds));
  }

  #insertWhitelist(endpointId: string, functionIds: readonly string[]): void {
    const ins = this.#stmt(
      "INSERT INTO endpoint_whitelist (endpoint_id, function_id) VALUES (?, ?) " +
        "ON CONFLICT DO NOTHING",
    );
    for (const f of functionIds) ins.run(endpointId, f);
  }

  async replaceWhitelist(endpointId: string, functionIds: readonly string[]): Promise<void> {
    this.#tx(() => {
      this.#stmt("DELETE FROM endpoint_whitelist WHERE endpoint_id = ?").run(endpointId);
      this.#insertWhitelist(endpointId, functionIds);
    });
  }

  async removeFromWhitelist(endpointId: string, functionId: string): Promise<boolean> {
    return this.#changes(
      "DELETE FROM endpoint_whitelist WHERE endpoint_id = ? AND function_id = ?",
      endpointId,
      functionId,
    ) > 0;
  }

  async endpointStatus(endpointId: string, now: number): Promise<EndpointStatus | undefined> {
    const row = this.#stmt(
      "SELECT state, expires_at FROM endpoint_status WHERE endpoint_id = ? AND expires_at > ?",
    ).get(endpointId, now);
    return row
      ? { endpointId, state: JSON.parse(str(row, "state")), expiresAt: num(row, "expires_at") }
      : undefined;
  }

  // ---- task groups and tasks ----

  async taskGroupOwner(id: string): Promise<string | undefined> {
    const row = this.#stmt("SELECT owner_id FROM task_groups WHERE id = ?").get(id);
    return row ? str(row, "owner_id") : undefined;
  }

  async setResultQueue(groupId: string, queue: string): Promise<void> {
    this.#stmt("UPDATE task_groups SET result_queue = ? WHERE id = ?").run(queue, groupId);
  }

  async resultQueueOf(taskId: string): Promise<string | undefined> {
    return (await this.resultQueuesOf([taskId])).get(taskId);
  }

  async resultQueuesOf(taskIds: readonly string[]): Promise<Map<string, string>> {
    // One statement for the whole batch of results.
    const rows = this.#stmt(
      "SELECT t.id, g.result_queue FROM tasks t JOIN task_groups g ON g.id = t.group_id " +
        "WHERE t.id IN (SELECT value FROM json_each(?)) AND g.result_queue IS NOT NULL",
    ).all(JSON.stringify(taskIds));
    return new Map(rows.map((r) => [str(r, "id"), str(r, "result_queue")]));
  }

  async taskGroupTasks(groupId: string): Promise<string[]> {
    return this.#stmt("SELECT id FROM tasks WHERE group_id = ? ORDER BY created_at, id").all(
      groupId,
    )
      .map((r) => str(r, "id"));
  }

  async addTasks(
    ownerId: string,
    groupId: string,
    tasks: readonly NewTask[],
    options: AddTasksOptions = {},
  ): Promise<NewTask[] | false> {
    const now = Date.now() / 1000;
    const expires = now + this.#taskTtlS;
    return this.#tx(() => {
      this.#stmt(
        "INSERT INTO task_groups (id, owner_id, created_at) VALUES (?, ?, ?) " +
          "ON CONFLICT (id) DO NOTHING",
      ).run(groupId, ownerId, now);
      const owner = this.#stmt("SELECT owner_id FROM task_groups WHERE id = ?").get(groupId);
      if (!owner || str(owner, "owner_id") !== ownerId) return false;
      if (options.resultQueue !== undefined) {
        this.#stmt("UPDATE task_groups SET result_queue = ? WHERE id = ?").run(
          options.resultQueue,
          groupId,
        );
      }
      const ins = this.#stmt(
        "INSERT INTO tasks (id, owner_id, group_id, function_id, endpoint_id, status, " +
          "created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'waiting-for-ep', ?, ?) " +
          "ON CONFLICT (id) DO NOTHING",
      );
      const out = this.#stmt(
        "INSERT INTO outbox (task_id, endpoint_id, body, created_at, lease_until) " +
          "VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING",
      );
      const inserted: NewTask[] = [];
      for (const t of tasks) {
        if (
          Number(
            ins.run(t.id, ownerId, groupId, t.functionId, t.endpointId, now, expires)
              .changes,
          ) === 0
        ) continue;
        inserted.push(t);
        if (t.message) out.run(t.id, t.endpointId, t.message, now, options.leaseUntil ?? 0);
      }
      return inserted;
    });
  }

  async claimOutbox(now: number, leaseUntil: number, limit: number): Promise<OutboxMessage[]> {
    return this.#tx(() =>
      this.#stmt(
        "UPDATE outbox SET lease_until = ? WHERE task_id IN (SELECT task_id FROM outbox " +
          "WHERE lease_until < ? ORDER BY created_at LIMIT ?) " +
          "RETURNING task_id, endpoint_id, body, created_at",
      ).all(leaseUntil, now, limit)
        .sort((a, b) => num(a, "created_at") - num(b, "created_at"))
        .map(toOutbox)
    );
  }

  async releaseOutbox(taskIds: readonly string[]): Promise<void> {
    this.#tx(() => {
      const upd = this.#stmt("UPDATE outbox SET lease_until = 0 WHERE task_id = ?");
      for (const id of taskIds) upd.run(id);
    });
  }

  async deleteOutbox(taskIds: readonly string[]): Promise<void> {
    this.#tx(() => {
      const del = this.#stmt("DELETE FROM outbox WHERE task_id = ?");
      for (const id of taskIds) del.run(id);
    });
  }

  async outboxSize(): Promise<number> {
    return num(this.#stmt("SELECT count(*) AS n FROM outbox").get()!, "n");
  }

  async failTasks(ids: readonly string[], code: string, exception: string): Promise<void> {
    const now = Date.now() / 1000;
    this.#tx(() => {
      const upd = this.#stmt(
        "UPDATE tasks SET status = 'failed', exception = ?, error_code = ?, completion_t = ? " +
          "WHERE id = ? AND status NOT IN ('success', 'failed')",
      );
      for (const id of ids) upd.run(exception, code, now, id);
    });
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const row = this.#stmt("SELECT * FROM tasks WHERE id = ?").get(id);
    return row ? toTask(row as Row) : undefined;
  }

  async completeTasks(completions: readonly TaskCompletion[]): Promise<number> {
    return this.applyResults({ updates: [], completions });
  }

  async updateStatuses(updates: ReadonlyArray<{ taskId: string; status: string }>): Promise<void> {
    await this.applyResults({ updates, completions: [] });
  }

  async applyResults(batch: ResultBatch): Promise<number> {
    const b = normalizeBatch(batch);
    if (b.updates.length + b.completions.length + b.statuses.length === 0) {
      return 0;
    }
    return this.#tx(() => {
      const status = this.#stmt(
        "INSERT INTO endpoint_status (endpoint_id, state, expires_at) VALUES (?, ?, ?) " +
          "ON CONFLICT (endpoint_id) DO UPDATE SET state = excluded.state, " +
          "expires_at = excluded.expires_at",
      );
      for (const s of b.statuses) status.run(s.endpointId, s.state, s.expiresAt);
      this.#recordUptime(b.statuses);
      const move = this.#stmt(
        "UPDATE tasks SET status = ? WHERE id = ? AND status NOT IN ('success', 'failed')",
      );
      for (const u of b.updates) move.run(u.status, u.taskId);
      const complete = this.#stmt(
        "UPDATE tasks SET status = ?, result = ?, exception = ?, error_code = ?, " +
          "completion_t = ?, transitions = ? WHERE id = ? AND status NOT IN ('success', 'failed')",
      );
      let changed = 0;
      for (const c of b.completions) {
        const ok = c.status === "success";
        changed += Number(
          complete.run(
            c.status,
            ok ? c.data : null,
            ok ? null : c.data,
            c.errorCode,
            c.completionT,
            transitionsJson(c.transitions),
            c.taskId,
          ).changes,
        );
      }
      return changed;
    });
  }

  /** Extends each endpoint's current online period, or starts one. */
  #recordUptime(statuses: ReadonlyArray<{ endpointId: string; expiresAt: number }>): void {
    const now = Date.now() / 1000;
    const extend = this.#stmt(
      "UPDATE endpoint_uptime SET last_report_at = ?, until = ? WHERE endpoint_id = ? " +
        "AND until >= ? AND since = (SELECT max(since) FROM endpoint_uptime WHERE endpoint_id = ?)",
    );
    const start = this.#stmt(
      "INSERT INTO endpoint_uptime (endpoint_id, since, last_report_at, until) " +
        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    for (const s of statuses) {
      const changed = Number(extend.run(now, s.expiresAt, s.endpointId, now, s.endpointId).changes);
      if (changed === 0 && s.expiresAt > now) start.run(s.endpointId, now, now, s.expiresAt);
    }
  }

  // ---- dashboard sessions and sign-in throttling ----

  async addSession(hash: string, userId: string, csrf: string, expiresAt: number): Promise<void> {
    this.#stmt(
      "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    ).run(hash, userId, csrf, Date.now() / 1000, expiresAt);
  }

  async sessionFor(hash: string, now: number): Promise<SessionRecord | undefined> {
    const row = this.#stmt(
      "SELECT u.id, u.name, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id " +
        "WHERE s.hash = ? AND s.expires_at > ?",
    ).get(hash, now);
    return row ? toSession(row) : undefined;
  }

  async deleteSession(hash: string): Promise<boolean> {
    return this.#changes("DELETE FROM sessions WHERE hash = ?", hash) > 0;
  }

  #attemptRow(key: string) {
    const row = this.#stmt("SELECT * FROM sign_in_attempts WHERE attempt_key = ?").get(key);
    return row ? toAttempt(row) : undefined;
  }

  #writeAttempt(limit: AttemptLimit, row: ReturnType<typeof toAttempt>): void {
    this.#stmt(
      "INSERT INTO sign_in_attempts (attempt_key, count, window_start, locked_until, expires_at) " +
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (attempt_key) DO UPDATE SET count = excluded.count, " +
        "window_start = excluded.window_start, locked_until = excluded.locked_until, " +
        "expires_at = excluded.expires_at",
    ).run(limit.key, row.count, row.windowStart, row.lockedUntil, attemptExpiry(row, limit));
  }

  /** Applies `step` to each limit's row in one transaction, in key order. */
  #attempt(limits: readonly AttemptLimit[], now: number, step: AttemptStep): AttemptVerdict[] {
    return this.#tx(() =>
      byKey(limits).map((limit) => {
        const { row, verdict } = step(this.#attemptRow(limit.key), limit, now);
        if (row) this.#writeAttempt(limit, row);
        return verdict;
      })
    );
  }

  async countSignIn(limits: readonly AttemptLimit[], now: number): Promise<AttemptVerdict[]> {
    return this.#attempt(limits, now, countAttempt);
  }

  async failSignIn(limits: readonly AttemptLimit[], now: number): Promise<AttemptVerdict[]> {
    return this.#attempt(limits, now, failAttempt);
  }

  async passSignIn(key: string): Promise<void> {
    this.#stmt("DELETE FROM sign_in_attempts WHERE attempt_key = ?").run(key);
  }

  // ---- dashboard reads ----

  async listFunctions(ownerId: string, limit: number): Promise<FunctionRecord[]> {
    return this.#stmt(
      "SELECT * FROM functions WHERE owner_id = ? ORDER BY created_at DESC, id LIMIT ?",
    ).all(ownerId, limit).map(toFunction);
  }

  async listTaskGroups(ownerId: string, limit: number): Promise<TaskGroupSummary[]> {
    return toGroupSummaries(
      this.#stmt(
        "SELECT g.id, g.created_at, t.status, count(*) AS n FROM task_groups g " +
          "JOIN tasks t ON t.group_id = g.id WHERE g.id IN (SELECT g2.id FROM task_groups g2 " +
          "WHERE g2.owner_id = ? AND EXISTS (SELECT 1 FROM tasks t2 WHERE t2.group_id = g2.id) " +
          "ORDER BY g2.created_at DESC LIMIT ?) GROUP BY g.id, g.created_at, t.status " +
          "ORDER BY g.created_at DESC, g.id",
      ).all(ownerId, limit),
    );
  }

  async taskGroupSummary(groupId: string): Promise<TaskGroupSummary | undefined> {
    return toGroupSummaries(
      this.#stmt(
        "SELECT g.id, g.created_at, t.status, count(t.id) AS n FROM task_groups g " +
          "LEFT JOIN tasks t ON t.group_id = g.id WHERE g.id = ? GROUP BY g.id, g.created_at, " +
          "t.status",
      ).all(groupId),
    )[0];
  }

  async listGroupTasks(groupId: string, limit: number): Promise<TaskSummary[]> {
    return this.#stmt(
      "SELECT id, function_id, endpoint_id, status, created_at, completion_t FROM tasks " +
        "WHERE group_id = ? ORDER BY created_at, id LIMIT ?",
    ).all(groupId, limit).map(toTaskSummary);
  }

  async waitingTasks(endpointIds: readonly string[]): Promise<Map<string, number>> {
    const rows = this.#stmt(
      "SELECT endpoint_id, count(*) AS n FROM tasks WHERE status = 'waiting-for-ep' AND " +
        "endpoint_id IN (SELECT value FROM json_each(?)) GROUP BY endpoint_id",
    ).all(JSON.stringify(endpointIds));
    return new Map(rows.map((r) => [str(r, "endpoint_id"), num(r, "n")]));
  }

  async endpointUptime(endpointId: string, since: number): Promise<UptimeSegment[]> {
    return this.#stmt(
      "SELECT since, last_report_at, until FROM endpoint_uptime WHERE endpoint_id = ? " +
        "AND until > ? ORDER BY since",
    ).all(endpointId, since).map((r) => ({
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
    // One transaction: between the conflicting insert and the read nobody can delete the row.
    return this.#tx((): IdempotencyReservation => {
      const won = this.#stmt(reserveSql(() => "?")).get(
        request.userId,
        request.key,
        request.method,
        request.path,
        request.requestHash,
        token,
        now,
        now + options.leaseS,
        now + options.ttlS,
      );
      if (won && str(won, "token") === token) return { reserved: true, token };
      const row = this.#stmt("SELECT * FROM idempotency_keys WHERE user_id = ? AND idem_key = ?")
        .get(request.userId, request.key)!;
      return { reserved: false, existing: toIdempotency(row) };
    });
  }

  async finishIdempotencyKey(
    hold: IdempotencyHold,
    response: { status: number; body: string },
  ): Promise<boolean> {
    return this.#changes(
      "UPDATE idempotency_keys SET state = 'done', response_status = ?, response_body = ? " +
        "WHERE user_id = ? AND idem_key = ? AND token = ? AND state = 'in_progress'",
      response.status,
      response.body,
      hold.userId,
      hold.key,
      hold.token,
    ) > 0;
  }

  async releaseIdempotencyKey(hold: IdempotencyHold): Promise<void> {
    this.#changes(
      "DELETE FROM idempotency_keys WHERE user_id = ? AND idem_key = ? AND token = ? " +
        "AND state = 'in_progress'",
      hold.userId,
      hold.key,
      hold.token,
    );
  }

  async purgeExpired(now: number = Date.now() / 1000): Promise<PurgeCounts> {
    return this.#tx(() => {
      this.#stmt("DELETE FROM sessions WHERE expires_at <= ?").run(now);
      this.#stmt("DELETE FROM sign_in_attempts WHERE expires_at <= ?").run(now);
      this.#stmt("DELETE FROM endpoint_uptime WHERE until <= ?").run(now - UPTIME_KEPT_S);
      return {
        tasks: this.#changes("DELETE FROM tasks WHERE expires_at <= ?", now),
        tokens: this.#changes("DELETE FROM tokens WHERE expires_at <= ?", now),
        deviceCodes: this.#changes("DELETE FROM device_codes WHERE expires_at <= ?", now),
        idempotencyKeys: this.#changes("DELETE FROM idempotency_keys WHERE expires_at <= ?", now),
      };
    });
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#db.close();
    }
  }
}
