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
import { getLogger } from "@logtape/logtape";
import { type Param, SqlStore, UPTIME_KEPT_S } from "./_sql_store.ts";
import {
  attemptExpiry,
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
import { CHECKPOINT_EVERY_MS, WalCheckpointer } from "./_wal_checkpointer.ts";
import { ADDED_COLUMNS, reserveParams, reserveSql, schema } from "./_store_schema.ts";
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

const log = getLogger(["funcx", "service", "store"]);

/** Options of {@linkcode SqliteStore.open}. */
export interface SqliteStoreOptions {
  /** Seconds a task and its result are kept. */
  taskTtlS: number;
  /**
   * Checkpoint the write-ahead log in a thread of its own instead of inside commits (ignored
   * for `":memory:"`). @default true
   */
  checkpointInThread?: boolean;
  /**
   * Sync every commit to disk before it returns (`synchronous = FULL`), so that a machine that
   * loses power loses no commit; otherwise commits are synced by the next checkpoint, at most a
   * second later, and only the machine's death (not the process's) can lose them. @default false
   */
  syncCommits?: boolean;
}

/** The SQLite store: the shared statements, run synchronously, and its own transactions. */
export class SqliteStore extends SqlStore implements Store {
  readonly kind = "sqlite" as const;
  readonly #db: DatabaseSync;
  readonly #taskTtlS: number;
  readonly #stmts = new Map<string, StatementSync>();
  #checkpointer: WalCheckpointer | undefined;
  #closed = false;

  private constructor(db: DatabaseSync, taskTtlS: number, path: string, inThread: boolean) {
    super();
    this.#db = db;
    this.#taskTtlS = taskTtlS;
    if (inThread && path !== ":memory:") {
      db.exec("PRAGMA wal_autocheckpoint = 0;");
      this.#checkpointer = WalCheckpointer.start(path, CHECKPOINT_EVERY_MS, (err) => {
        // The log must not grow without bound: back to checkpoints inside commits.
        log.error("Cannot checkpoint the store in a thread ({err}); commits checkpoint it again", {
          err,
        });
        this.#checkpointer = undefined;
        if (!this.#closed) db.exec("PRAGMA wal_autocheckpoint = 1000;");
      });
    }
  }

  /** Whether each commit is synced to disk before it returns (`syncCommits`). */
  get syncsCommits(): boolean {
    return Number(this.#db.prepare("PRAGMA synchronous").get()?.["synchronous"]) >= 2;
  }

  /** Whether a thread of its own checkpoints the write-ahead log (commits do otherwise). */
  get checkpointsInThread(): boolean {
    return this.#checkpointer !== undefined;
  }

  /** Opens (and creates) the store at `path`; `":memory:"` for a private in-memory one. */
  static open(path: string, options: SqliteStoreOptions): SqliteStore {
    const db = new DatabaseSync(path);
    try {
      db.exec(
        `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${
          options.syncCommits ? "FULL" : "NORMAL"
        }; PRAGMA busy_timeout = 5000;`,
      );
      db.exec(schema("REAL"));
      for (const [table, column, type] of ADDED_COLUMNS) {
        const has = db.prepare(`PRAGMA table_info(${table})`).all().some((c) => c.name === column);
        if (!has) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
      }
    } catch (err) {
      db.close();
      throw err;
    }
    return new SqliteStore(db, options.taskTtlS, path, options.checkpointInThread ?? true);
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

  #changes(sql: string, ...params: Param[]): number {
    return Number(this.#stmt(sql).run(...params).changes);
  }

  protected override async all(sql: string, params: readonly Param[] = []): Promise<Row[]> {
    return this.#stmt(sql).all(...params);
  }

  protected override async run(sql: string, params: readonly Param[] = []): Promise<number> {
    return this.#changes(sql, ...params);
  }

  // ---- device codes ----

  async pollDeviceCode(hash: string, now: number): Promise<number> {
    return this.#tx(() => {
      const row = this.#stmt("SELECT last_poll FROM device_codes WHERE hash = ?").get(hash);
      this.#stmt("UPDATE device_codes SET last_poll = ? WHERE hash = ?").run(now, hash);
      return row ? num(row, "last_poll") : 0;
    });
  }

  // ---- endpoints ----

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

  // ---- task groups and tasks ----

  async resultQueuesOf(taskIds: readonly string[]): Promise<Map<string, string>> {
    // One statement for the whole batch of results.
    const rows = this.#stmt(
      "SELECT t.id, g.result_queue FROM tasks t JOIN task_groups g ON g.id = t.group_id " +
        "WHERE t.id IN (SELECT value FROM json_each(?)) AND g.result_queue IS NOT NULL",
    ).all(JSON.stringify(taskIds));
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
          "created_at, expires_at, resource_specification) " +
          "VALUES (?, ?, ?, ?, ?, 'waiting-for-ep', ?, ?, ?) ON CONFLICT (id) DO NOTHING",
      );
      const out = this.#stmt(
        "INSERT INTO outbox (task_id, endpoint_id, body, created_at, lease_until) " +
          "VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING",
      );
      const inserted: NewTask[] = [];
      for (const t of tasks) {
        if (
          Number(
            ins.run(
              t.id,
              ownerId,
              groupId,
              t.functionId,
              t.endpointId,
              now,
              expires,
              t.resourceSpecification ? JSON.stringify(t.resourceSpecification) : null,
            ).changes,
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

  // ---- dashboard reads ----

  async waitingTasks(endpointIds: readonly string[]): Promise<Map<string, number>> {
    const rows = this.#stmt(
      "SELECT endpoint_id, count(*) AS n FROM tasks WHERE status = 'waiting-for-ep' AND " +
        "endpoint_id IN (SELECT value FROM json_each(?)) GROUP BY endpoint_id",
    ).all(JSON.stringify(endpointIds));
    return new Map(rows.map((r) => [str(r, "endpoint_id"), num(r, "n")]));
  }

  // ---- idempotency keys ----

  async reserveIdempotencyKey(
    request: IdempotencyRequest,
    options: ReserveOptions,
  ): Promise<IdempotencyReservation> {
    const token = crypto.randomUUID();
    // One transaction: between the conflicting insert and the read nobody can delete the row.
    return this.#tx((): IdempotencyReservation => {
      const won = this.#stmt(reserveSql(() => "?")).get(...reserveParams(request, token, options));
      if (won && str(won, "token") === token) return { reserved: true, token };
      const row = this.#stmt("SELECT * FROM idempotency_keys WHERE user_id = ? AND idem_key = ?")
        .get(request.userId, request.key)!;
      return { reserved: false, existing: toIdempotency(row) };
    });
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
      await this.#checkpointer?.stop();
    }
  }
}
