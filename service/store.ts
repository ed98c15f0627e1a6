/**
 * The service's task store on SQLite (`node:sqlite`, WAL mode): users, API clients and tokens,
 * functions, endpoints, task groups and tasks. Routes write submitted tasks here before they are
 * published; the result processor writes results here in batches.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { TaskTransition } from "../sdk/protocol/mod.ts";

/** A user of the service. */
export interface UserRecord {
  id: string;
  name: string;
}

/** A registered function. */
export interface FunctionRecord {
  id: string;
  ownerId: string;
  name: string;
  code: string;
  description: string;
  public: boolean;
  createdAt: number;
}

/** A registered endpoint. */
export interface EndpointRecord {
  id: string;
  ownerId: string;
  name: string;
  metadata: Record<string, unknown>;
  createdAt: number;
  lastRegisteredAt: number;
  /** Until when (epoch seconds) `stop --remote` locked it: registrations are refused till then. */
  lockedUntil: number;
  /** Deleted: the id can never be registered again. */
  deleted: boolean;
}

/** A task as stored. */
export interface TaskRecord {
  id: string;
  ownerId: string;
  groupId: string;
  functionId: string;
  endpointId: string;
  status: string;
  result: string | null;
  exception: string | null;
  errorCode: string | null;
  createdAt: number;
  completionT: number | null;
  expiresAt: number;
  /** Recorded state transitions; timestamps are ns since the epoch as decimal strings. */
  transitions: Array<{ state: string; actor: string; timestamp: string }> | null;
}

/** A new task to insert. */
export interface NewTask {
  id: string;
  functionId: string;
  endpointId: string;
}

/** A result to apply to its task. */
export interface TaskCompletion {
  taskId: string;
  status: "success" | "failed";
  data: string;
  errorCode: string | null;
  completionT: number;
  transitions: TaskTransition[] | null;
}

/** Options of {@linkcode Store.open}. */
export interface StoreOptions {
  /** Seconds a task and its result are kept. @default 1209600 (two weeks) */
  taskTtlS?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), secret_hash TEXT NOT NULL,
  name TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), client_id TEXT,
  kind TEXT NOT NULL DEFAULT 'access', expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS device_codes (
  hash TEXT PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, client_id TEXT NOT NULL,
  status TEXT NOT NULL, user_id TEXT, expires_at REAL NOT NULL, last_poll REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS functions (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, code TEXT NOT NULL,
  description TEXT NOT NULL, public INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, metadata TEXT NOT NULL,
  created_at REAL NOT NULL, last_registered_at REAL NOT NULL, locked_until REAL NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS endpoint_users (
  endpoint_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (endpoint_id, user_id));
CREATE TABLE IF NOT EXISTS endpoint_whitelist (
  endpoint_id TEXT NOT NULL, function_id TEXT NOT NULL, PRIMARY KEY (endpoint_id, function_id));
CREATE TABLE IF NOT EXISTS task_groups (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, created_at REAL NOT NULL,
  result_queue TEXT);
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, group_id TEXT NOT NULL, function_id TEXT NOT NULL,
  endpoint_id TEXT NOT NULL, status TEXT NOT NULL, result TEXT, exception TEXT, error_code TEXT,
  transitions TEXT, created_at REAL NOT NULL, completion_t REAL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_group ON tasks(group_id);
CREATE INDEX IF NOT EXISTS tasks_expires ON tasks(expires_at);
`;

/** A device authorization in progress. */
export interface DeviceCodeRecord {
  hash: string;
  userCode: string;
  clientId: string;
  status: "pending" | "approved" | "denied";
  userId: string | null;
  expiresAt: number;
}

type Row = Record<string, unknown>;

function str(row: Row, key: string): string {
  return String(row[key]);
}

function num(row: Row, key: string): number {
  return Number(row[key]);
}

function strOrNull(row: Row, key: string): string | null {
  const v = row[key];
  return v === null || v === undefined ? null : String(v);
}

function toTask(row: Row): TaskRecord {
  const completion = row["completion_t"];
  return {
    id: str(row, "id"),
    ownerId: str(row, "owner_id"),
    groupId: str(row, "group_id"),
    functionId: str(row, "function_id"),
    endpointId: str(row, "endpoint_id"),
    status: str(row, "status"),
    result: strOrNull(row, "result"),
    exception: strOrNull(row, "exception"),
    errorCode: strOrNull(row, "error_code"),
    createdAt: num(row, "created_at"),
    completionT: completion === null || completion === undefined ? null : Number(completion),
    expiresAt: num(row, "expires_at"),
    transitions: row["transitions"] ? JSON.parse(str(row, "transitions")) : null,
  };
}

function toDeviceCode(row: Row): DeviceCodeRecord {
  return {
    hash: str(row, "hash"),
    userCode: str(row, "user_code"),
    clientId: str(row, "client_id"),
    status: str(row, "status") as DeviceCodeRecord["status"],
    userId: strOrNull(row, "user_id"),
    expiresAt: num(row, "expires_at"),
  };
}

function transitionsJson(transitions: TaskTransition[] | null): string | null {
  if (!transitions) return null;
  // ns timestamps are kept as decimal strings so they survive JSON without losing digits.
  return JSON.stringify(
    transitions.map((t) => ({ ...t, timestamp: t.timestamp.toString() })),
  );
}

/** The SQLite store. One instance per service process. */
export class Store {
  readonly #db: DatabaseSync;
  readonly #taskTtlS: number;
  readonly #stmts = new Map<string, StatementSync>();
  #closed = false;

  private constructor(db: DatabaseSync, taskTtlS: number) {
    this.#db = db;
    this.#taskTtlS = taskTtlS;
  }

  /** Opens (and creates) the store at `path`; `":memory:"` for a private in-memory one. */
  static open(path: string, options: StoreOptions = {}): Store {
    const db = new DatabaseSync(path);
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    db.exec(SCHEMA);
    return new Store(db, options.taskTtlS ?? 1209600);
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

  // ---- users, clients, tokens ----

  /** Creates a user, or returns the existing one with that name. */
  ensureUser(name: string, passwordHash: string | null = null): UserRecord {
    const existing = this.#stmt("SELECT id, name FROM users WHERE name = ?").get(name);
    if (existing) return { id: str(existing, "id"), name: str(existing, "name") };
    const id = crypto.randomUUID();
    this.#stmt("INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?)")
      .run(id, name, passwordHash, Date.now() / 1000);
    return { id, name };
  }

  /** Lists users. */
  listUsers(): UserRecord[] {
    return this.#stmt("SELECT id, name FROM users ORDER BY name").all().map((r) => ({
      id: str(r, "id"),
      name: str(r, "name"),
    }));
  }

  /** Stores an API client whose secret is already hashed. */
  addClient(id: string, userId: string, secretHash: string, name: string): void {
    this.#stmt(
      "INSERT INTO clients (id, user_id, secret_hash, name, created_at) VALUES (?, ?, ?, ?, ?)",
    ).run(id, userId, secretHash, name, Date.now() / 1000);
  }

  /** The secret hash and user of a client, or undefined. */
  getClient(id: string): { userId: string; secretHash: string } | undefined {
    const row = this.#stmt("SELECT user_id, secret_hash FROM clients WHERE id = ?").get(id);
    return row ? { userId: str(row, "user_id"), secretHash: str(row, "secret_hash") } : undefined;
  }

  /** Stores a token by its hash. */
  addToken(
    hash: string,
    userId: string,
    clientId: string | null,
    expiresAt: number,
    kind: "access" | "refresh" = "access",
  ): void {
    this.#stmt(
      "INSERT INTO tokens (hash, user_id, client_id, kind, expires_at) VALUES (?, ?, ?, ?, ?)",
    ).run(hash, userId, clientId, kind, expiresAt);
  }

  /** The user (and client) an unexpired token hash of `kind` belongs to. */
  userForToken(
    hash: string,
    now: number,
    kind: "access" | "refresh" = "access",
  ): (UserRecord & { clientId: string | null }) | undefined {
    const row = this.#stmt(
      "SELECT u.id, u.name, t.client_id FROM tokens t JOIN users u ON u.id = t.user_id " +
        "WHERE t.hash = ? AND t.expires_at > ? AND t.kind = ?",
    ).get(hash, now, kind);
    return row
      ? { id: str(row, "id"), name: str(row, "name"), clientId: strOrNull(row, "client_id") }
      : undefined;
  }

  /** Deletes a token by its hash; whether it existed. */
  deleteToken(hash: string): boolean {
    return Number(this.#stmt("DELETE FROM tokens WHERE hash = ?").run(hash).changes) > 0;
  }

  /** Sets a user's password hash. */
  setPassword(userId: string, passwordHash: string): void {
    this.#stmt("UPDATE users SET password_hash = ? WHERE id = ?").run(passwordHash, userId);
  }

  /** A user and its password hash by name. */
  userByName(name: string): (UserRecord & { passwordHash: string | null }) | undefined {
    const row = this.#stmt("SELECT id, name, password_hash FROM users WHERE name = ?").get(name);
    return row
      ? {
        id: str(row, "id"),
        name: str(row, "name"),
        passwordHash: strOrNull(row, "password_hash"),
      }
      : undefined;
  }

  /** Starts a device authorization. */
  addDeviceCode(hash: string, userCode: string, clientId: string, expiresAt: number): void {
    this.#stmt(
      "INSERT INTO device_codes (hash, user_code, client_id, status, expires_at) " +
        "VALUES (?, ?, ?, 'pending', ?)",
    ).run(hash, userCode, clientId, expiresAt);
  }

  /** A device authorization by the hash of its device code. */
  deviceCode(hash: string): DeviceCodeRecord | undefined {
    const row = this.#stmt("SELECT * FROM device_codes WHERE hash = ?").get(hash);
    return row ? toDeviceCode(row) : undefined;
  }

  /** A device authorization by its user code. */
  deviceCodeByUserCode(userCode: string): DeviceCodeRecord | undefined {
    const row = this.#stmt("SELECT * FROM device_codes WHERE user_code = ?").get(userCode);
    return row ? toDeviceCode(row) : undefined;
  }

  /** Approves or denies a pending device authorization. */
  decideDeviceCode(hash: string, status: "approved" | "denied", userId: string | null): void {
    this.#stmt(
      "UPDATE device_codes SET status = ?, user_id = ? WHERE hash = ? AND status = 'pending'",
    ).run(status, userId, hash);
  }

  /** Records a poll; returns the time of the previous one. */
  pollDeviceCode(hash: string, now: number): number {
    const row = this.#stmt("SELECT last_poll FROM device_codes WHERE hash = ?").get(hash);
    this.#stmt("UPDATE device_codes SET last_poll = ? WHERE hash = ?").run(now, hash);
    return row ? num(row, "last_poll") : 0;
  }

  /** Ends a device authorization (after its tokens were issued). */
  deleteDeviceCode(hash: string): void {
    this.#stmt("DELETE FROM device_codes WHERE hash = ?").run(hash);
  }

  // ---- functions ----

  /** Stores a function. */
  addFunction(fn: FunctionRecord): void {
    this.#stmt(
      "INSERT INTO functions (id, owner_id, name, code, description, public, created_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
    ).run(fn.id, fn.ownerId, fn.name, fn.code, fn.description, fn.public ? 1 : 0, fn.createdAt);
  }

  /** A function by id. */
  getFunction(id: string): FunctionRecord | undefined {
    const row = this.#stmt("SELECT * FROM functions WHERE id = ?").get(id);
    if (!row) return undefined;
    return {
      id: str(row, "id"),
      ownerId: str(row, "owner_id"),
      name: str(row, "name"),
      code: str(row, "code"),
      description: str(row, "description"),
      public: num(row, "public") === 1,
      createdAt: num(row, "created_at"),
    };
  }

  // ---- endpoints ----

  /** Inserts or refreshes an endpoint record. */
  upsertEndpoint(
    ep: Omit<EndpointRecord, "createdAt" | "lastRegisteredAt" | "lockedUntil" | "deleted">,
  ): void {
    const now = Date.now() / 1000;
    this.#stmt(
      "INSERT INTO endpoints (id, owner_id, name, metadata, created_at, last_registered_at) " +
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name, " +
        "metadata = excluded.metadata, last_registered_at = excluded.last_registered_at",
    ).run(ep.id, ep.ownerId, ep.name, JSON.stringify(ep.metadata), now, now);
  }

  /** An endpoint by id. */
  getEndpoint(id: string): EndpointRecord | undefined {
    const row = this.#stmt("SELECT * FROM endpoints WHERE id = ?").get(id);
    if (!row) return undefined;
    return {
      id: str(row, "id"),
      ownerId: str(row, "owner_id"),
      name: str(row, "name"),
      metadata: JSON.parse(str(row, "metadata")),
      createdAt: num(row, "created_at"),
      lastRegisteredAt: num(row, "last_registered_at"),
      lockedUntil: num(row, "locked_until"),
      deleted: num(row, "deleted") === 1,
    };
  }

  /** A user's endpoints that are not deleted. */
  listEndpoints(ownerId: string): EndpointRecord[] {
    return this.#stmt(
      "SELECT id FROM endpoints WHERE owner_id = ? AND deleted = 0 ORDER BY created_at",
    ).all(ownerId).map((r) => this.getEndpoint(str(r, "id"))!);
  }

  /** Locks an endpoint until `until` (epoch seconds; 0 clears the lock). */
  lockEndpoint(id: string, until: number): void {
    this.#stmt("UPDATE endpoints SET locked_until = ? WHERE id = ?").run(until, id);
  }

  /** Marks an endpoint deleted and forgets its allowed functions. */
  deleteEndpoint(id: string): void {
    this.#tx(() => {
      this.#stmt("UPDATE endpoints SET deleted = 1 WHERE id = ?").run(id);
      this.#stmt("DELETE FROM endpoint_whitelist WHERE endpoint_id = ?").run(id);
    });
  }

  /** Lets other users submit to an endpoint. */
  shareEndpoint(endpointId: string, userIds: readonly string[]): void {
    this.#tx(() => {
      const ins = this.#stmt(
        "INSERT INTO endpoint_users (endpoint_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
      );
      for (const u of userIds) ins.run(endpointId, u);
    });
  }

  /** Stops sharing an endpoint with a user; whether it was shared. */
  unshareEndpoint(endpointId: string, userId: string): boolean {
    return Number(
      this.#stmt("DELETE FROM endpoint_users WHERE endpoint_id = ? AND user_id = ?")
        .run(endpointId, userId).changes,
    ) > 0;
  }

  /** Whether an endpoint is shared with a user. */
  isSharedWith(endpointId: string, userId: string): boolean {
    return this.#stmt("SELECT 1 FROM endpoint_users WHERE endpoint_id = ? AND user_id = ?")
      .get(endpointId, userId) !== undefined;
  }

  /** Names of the users an endpoint is shared with. */
  sharedWith(endpointId: string): string[] {
    return this.#stmt(
      "SELECT u.name FROM endpoint_users e JOIN users u ON u.id = e.user_id " +
        "WHERE e.endpoint_id = ? ORDER BY u.name",
    ).all(endpointId).map((r) => str(r, "name"));
  }

  /** Functions an endpoint allows (empty: all). */
  whitelist(endpointId: string): string[] {
    return this.#stmt(
      "SELECT function_id FROM endpoint_whitelist WHERE endpoint_id = ? ORDER BY function_id",
    ).all(endpointId).map((r) => str(r, "function_id"));
  }

  /** Adds functions to an endpoint's allow-list. */
  addToWhitelist(endpointId: string, functionIds: readonly string[]): void {
    this.#tx(() => this.#insertWhitelist(endpointId, functionIds));
  }

  #insertWhitelist(endpointId: string, functionIds: readonly string[]): void {
    const ins = this.#stmt(
      "INSERT INTO endpoint_whitelist (endpoint_id, function_id) VALUES (?, ?) " +
        "ON CONFLICT DO NOTHING",
    );
    for (const f of functionIds) ins.run(endpointId, f);
  }

  /** Replaces an endpoint's allow-list. */
  replaceWhitelist(endpointId: string, functionIds: readonly string[]): void {
    this.#tx(() => {
      this.#stmt("DELETE FROM endpoint_whitelist WHERE endpoint_id = ?").run(endpointId);
      this.#insertWhitelist(endpointId, functionIds);
    });
  }

  /** Removes a function from an endpoint's allow-list; whether it was there. */
  removeFromWhitelist(endpointId: string, functionId: string): boolean {
    return Number(
      this.#stmt("DELETE FROM endpoint_whitelist WHERE endpoint_id = ? AND function_id = ?")
        .run(endpointId, functionId).changes,
    ) > 0;
  }

  // ---- task groups and tasks ----

  /** The owner of a task group, or undefined when it does not exist. */
  taskGroupOwner(id: string): string | undefined {
    const row = this.#stmt("SELECT owner_id FROM task_groups WHERE id = ?").get(id);
    return row ? str(row, "owner_id") : undefined;
  }

  /** Records that a group's results are forwarded to `queue`. */
  setResultQueue(groupId: string, queue: string): void {
    this.#stmt("UPDATE task_groups SET result_queue = ? WHERE id = ?").run(queue, groupId);
  }

  /** The result queue a task's results are forwarded to, if its group has one. */
  resultQueueOf(taskId: string): string | undefined {
    const row = this.#stmt(
      "SELECT g.result_queue FROM tasks t JOIN task_groups g ON g.id = t.group_id " +
        "WHERE t.id = ? AND g.result_queue IS NOT NULL",
    ).get(taskId);
    return row ? str(row, "result_queue") : undefined;
  }

  /** Ids of the tasks of a group. */
  taskGroupTasks(groupId: string): string[] {
    return this.#stmt("SELECT id FROM tasks WHERE group_id = ? ORDER BY created_at, id").all(
      groupId,
    )
      .map((r) => str(r, "id"));
  }

  /** Inserts tasks (and their group if new) in one transaction, all `waiting-for-ep`. */
  addTasks(ownerId: string, groupId: string, tasks: readonly NewTask[]): void {
    const now = Date.now() / 1000;
    const expires = now + this.#taskTtlS;
    this.#tx(() => {
      this.#stmt(
        "INSERT INTO task_groups (id, owner_id, created_at) VALUES (?, ?, ?) " +
          "ON CONFLICT(id) DO NOTHING",
      ).run(groupId, ownerId, now);
      const ins = this.#stmt(
        "INSERT INTO tasks (id, owner_id, group_id, function_id, endpoint_id, status, " +
          "created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'waiting-for-ep', ?, ?)",
      );
      for (const t of tasks) {
        ins.run(t.id, ownerId, groupId, t.functionId, t.endpointId, now, expires);
      }
    });
  }

  /** Marks tasks failed with a service-side reason (for example a publish that failed). */
  failTasks(ids: readonly string[], code: string, exception: string): void {
    const now = Date.now() / 1000;
    this.#tx(() => {
      const upd = this.#stmt(
        "UPDATE tasks SET status = 'failed', exception = ?, error_code = ?, completion_t = ? " +
          "WHERE id = ? AND status NOT IN ('success', 'failed')",
      );
      for (const id of ids) upd.run(exception, code, now, id);
    });
  }

  /** A task by id. */
  getTask(id: string): TaskRecord | undefined {
    const row = this.#stmt("SELECT * FROM tasks WHERE id = ?").get(id);
    return row ? toTask(row) : undefined;
  }

  /** Applies results in one transaction; a task already complete is left as it is (dedupe). */
  completeTasks(completions: readonly TaskCompletion[]): number {
    if (completions.length === 0) return 0;
    return this.#tx(() => {
      const upd = this.#stmt(
        "UPDATE tasks SET status = ?, result = ?, exception = ?, error_code = ?, " +
          "completion_t = ?, transitions = ? WHERE id = ? AND status NOT IN ('success', 'failed')",
      );
      let changed = 0;
      for (const c of completions) {
        const ok = c.status === "success";
        const res = upd.run(
          c.status,
          ok ? c.data : null,
          ok ? null : c.data,
          c.errorCode,
          c.completionT,
          transitionsJson(c.transitions),
          c.taskId,
        );
        changed += Number(res.changes);
      }
      return changed;
    });
  }

  /** Moves incomplete tasks to a newer intermediate state. */
  updateStatuses(updates: ReadonlyArray<{ taskId: string; status: string }>): void {
    if (updates.length === 0) return;
    this.#tx(() => {
      const upd = this.#stmt(
        "UPDATE tasks SET status = ? WHERE id = ? AND status NOT IN ('success', 'failed')",
      );
      for (const u of updates) upd.run(u.status, u.taskId);
    });
  }

  /** Deletes tasks past their TTL; returns how many. */
  purgeExpired(now: number = Date.now() / 1000): number {
    return Number(this.#stmt("DELETE FROM tasks WHERE expires_at <= ?").run(now).changes);
  }

  /** Closes the database; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
