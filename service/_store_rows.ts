/**
 * What the SQLite and PostgreSQL stores share: the schema (one text, with the floating-point
 * column type filled in per database) and the mapping of rows to records.
 *
 * @module
 */
import type { TaskTransition } from "../sdk/protocol/mod.ts";
import type {
  AttemptLimit,
  AttemptVerdict,
  ContainerRecord,
  DeviceCodeRecord,
  EndpointRecord,
  FunctionRecord,
  IdempotencyRecord,
  OutboxMessage,
  ResultBatch,
  SessionRecord,
  TaskCompletion,
  TaskGroupSummary,
  TaskRecord,
  TaskSummary,
} from "./store.ts";

/**
 * The schema; `real` is the type of epoch-second columns (SQLite's REAL is 8 bytes, PostgreSQL's
 * is 4, so PostgreSQL gets DOUBLE PRECISION); `blob` that of raw bytes (PostgreSQL's BYTEA).
 * Booleans are 0/1 integers in both. The `outbox` holds the message of every task not yet
 * confirmed by the broker, written in the same transaction as the task.
 */
export function schema(real: string, blob = "BLOB"): string {
  return `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT, created_at ${real} NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), secret_hash TEXT NOT NULL,
  name TEXT NOT NULL, created_at ${real} NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), client_id TEXT,
  kind TEXT NOT NULL DEFAULT 'access', expires_at ${real} NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_expires ON tokens(expires_at);
CREATE TABLE IF NOT EXISTS device_codes (
  hash TEXT PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, client_id TEXT NOT NULL,
  status TEXT NOT NULL, user_id TEXT, expires_at ${real} NOT NULL,
  last_poll ${real} NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS functions (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, code TEXT NOT NULL,
  description TEXT NOT NULL, public INTEGER NOT NULL, container_id TEXT,
  created_at ${real} NOT NULL);
CREATE TABLE IF NOT EXISTS containers (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
  type TEXT NOT NULL, location TEXT NOT NULL, created_at ${real} NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, metadata TEXT NOT NULL,
  created_at ${real} NOT NULL, last_registered_at ${real} NOT NULL,
  locked_until ${real} NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS endpoint_users (
  endpoint_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (endpoint_id, user_id));
CREATE TABLE IF NOT EXISTS endpoint_whitelist (
  endpoint_id TEXT NOT NULL, function_id TEXT NOT NULL, PRIMARY KEY (endpoint_id, function_id));
CREATE TABLE IF NOT EXISTS endpoint_status (
  endpoint_id TEXT PRIMARY KEY, state TEXT NOT NULL, expires_at ${real} NOT NULL);
CREATE TABLE IF NOT EXISTS task_groups (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, created_at ${real} NOT NULL,
  result_queue TEXT);
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, group_id TEXT NOT NULL, function_id TEXT NOT NULL,
  endpoint_id TEXT NOT NULL, status TEXT NOT NULL, result TEXT, exception TEXT, error_code TEXT,
  transitions TEXT, created_at ${real} NOT NULL, completion_t ${real},
  expires_at ${real} NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_group ON tasks(group_id);
CREATE INDEX IF NOT EXISTS tasks_expires ON tasks(expires_at);
CREATE TABLE IF NOT EXISTS outbox (
  task_id TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL, body ${blob} NOT NULL,
  created_at ${real} NOT NULL, lease_until ${real} NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_lease ON outbox(lease_until);
CREATE TABLE IF NOT EXISTS idempotency_keys (
  user_id TEXT NOT NULL, idem_key TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
  request_hash TEXT NOT NULL, token TEXT NOT NULL, state TEXT NOT NULL,
  response_status INTEGER, response_body TEXT, created_at ${real} NOT NULL,
  lease_until ${real} NOT NULL, expires_at ${real} NOT NULL, PRIMARY KEY (user_id, idem_key));
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency_keys(expires_at);
CREATE TABLE IF NOT EXISTS sessions (
  hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
  created_at ${real} NOT NULL, expires_at ${real} NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS sign_in_attempts (
  attempt_key TEXT PRIMARY KEY, count INTEGER NOT NULL, window_start ${real} NOT NULL,
  locked_until ${real} NOT NULL, expires_at ${real} NOT NULL);
CREATE TABLE IF NOT EXISTS endpoint_uptime (
  endpoint_id TEXT NOT NULL, since ${real} NOT NULL, last_report_at ${real} NOT NULL,
  until ${real} NOT NULL, PRIMARY KEY (endpoint_id, since));
CREATE INDEX IF NOT EXISTS tasks_owner_group ON tasks(owner_id, group_id);
CREATE INDEX IF NOT EXISTS task_groups_owner ON task_groups(owner_id, created_at);
`;
}

/**
 * The reservation statement of both databases (positional `?`/`$n` placeholders are added by the
 * caller): insert, or take over a row that expired or whose attempt of the same request was
 * abandoned; otherwise leave the row alone and return nothing.
 */
export function reserveSql(p: (i: number) => string): string {
  return `INSERT INTO idempotency_keys (user_id, idem_key, method, path, request_hash, token,
  state, response_status, response_body, created_at, lease_until, expires_at)
VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, 'in_progress', NULL, NULL, ${p(7)},
  ${p(8)}, ${p(9)})
ON CONFLICT (user_id, idem_key) DO UPDATE SET method = excluded.method, path = excluded.path,
  request_hash = excluded.request_hash, token = excluded.token, state = 'in_progress',
  response_status = NULL, response_body = NULL, created_at = excluded.created_at,
  lease_until = excluded.lease_until, expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at <= excluded.created_at
  OR (idempotency_keys.state = 'in_progress' AND idempotency_keys.lease_until <= excluded.created_at
    AND idempotency_keys.method = excluded.method AND idempotency_keys.path = excluded.path
    AND idempotency_keys.request_hash = excluded.request_hash)
RETURNING token`;
}

/** A database row. */
export type Row = Record<string, unknown>;

/** A column as a string. */
export function str(row: Row, key: string): string {
  return String(row[key]);
}

/** A column as a number. */
export function num(row: Row, key: string): number {
  return Number(row[key]);
}

/** A nullable column as a string or null. */
export function strOrNull(row: Row, key: string): string | null {
  const v = row[key];
  return v === null || v === undefined ? null : String(v);
}

function numOrNull(row: Row, key: string): number | null {
  const v = row[key];
  return v === null || v === undefined ? null : Number(v);
}

/** A `tasks` row as a record. */
export function toTask(row: Row): TaskRecord {
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
    completionT: numOrNull(row, "completion_t"),
    expiresAt: num(row, "expires_at"),
    transitions: row["transitions"] ? JSON.parse(str(row, "transitions")) : null,
  };
}

/** A `device_codes` row as a record. */
export function toDeviceCode(row: Row): DeviceCodeRecord {
  return {
    hash: str(row, "hash"),
    userCode: str(row, "user_code"),
    clientId: str(row, "client_id"),
    status: str(row, "status") as DeviceCodeRecord["status"],
    userId: strOrNull(row, "user_id"),
    expiresAt: num(row, "expires_at"),
  };
}

/** A `functions` row as a record. */
export function toFunction(row: Row): FunctionRecord {
  return {
    id: str(row, "id"),
    ownerId: str(row, "owner_id"),
    name: str(row, "name"),
    code: str(row, "code"),
    description: str(row, "description"),
    public: num(row, "public") === 1,
    containerId: strOrNull(row, "container_id"),
    createdAt: num(row, "created_at"),
  };
}

/** A `containers` row as a record. */
export function toContainer(row: Row): ContainerRecord {
  return {
    id: str(row, "id"),
    ownerId: str(row, "owner_id"),
    name: str(row, "name"),
    description: str(row, "description"),
    type: str(row, "type"),
    location: str(row, "location"),
    createdAt: num(row, "created_at"),
  };
}

/** An `endpoints` row as a record. */
export function toEndpoint(row: Row): EndpointRecord {
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

/** An `idempotency_keys` row as a record. */
export function toIdempotency(row: Row): IdempotencyRecord {
  return {
    userId: str(row, "user_id"),
    key: str(row, "idem_key"),
    method: str(row, "method"),
    path: str(row, "path"),
    requestHash: str(row, "request_hash"),
    token: str(row, "token"),
    state: str(row, "state") as IdempotencyRecord["state"],
    responseStatus: numOrNull(row, "response_status"),
    responseBody: strOrNull(row, "response_body"),
    createdAt: num(row, "created_at"),
    leaseUntil: num(row, "lease_until"),
    expiresAt: num(row, "expires_at"),
  };
}

/** Transitions as stored: ns timestamps as decimal strings, so JSON keeps every digit. */
export function transitionsJson(transitions: TaskTransition[] | null): string | null {
  if (!transitions) return null;
  return JSON.stringify(
    transitions.map((t) => ({ ...t, timestamp: t.timestamp.toString() })),
  );
}

/** JSON text of a status report's state; a `bigint` in it becomes a decimal string. */
export function stateJson(state: Record<string, unknown>): string {
  return JSON.stringify(state, (_k, v) => typeof v === "bigint" ? v.toString() : v);
}

/** A result batch with one entry per task and endpoint, as the stores apply it. */
export interface NormalizedBatch {
  updates: Array<{ taskId: string; status: string }>;
  completions: TaskCompletion[];
  statuses: Array<{ endpointId: string; state: string; expiresAt: number }>;
}

/**
 * One entry per task and endpoint (the last status update, the first result, the last report),
 * sorted by id: every writer then locks rows in the same order and two replicas cannot deadlock.
 */
export function normalizeBatch(batch: ResultBatch): NormalizedBatch {
  const updates = new Map<string, string>();
  for (const u of batch.updates) updates.set(u.taskId, u.status);
  const completions = new Map<string, TaskCompletion>();
  for (const c of batch.completions) if (!completions.has(c.taskId)) completions.set(c.taskId, c);
  const statuses = new Map<string, { endpointId: string; state: string; expiresAt: number }>();
  for (const s of batch.statuses ?? []) {
    statuses.set(s.endpointId, {
      endpointId: s.endpointId,
      state: stateJson(s.state),
      expiresAt: s.expiresAt,
    });
  }
  const byKey = <T>(m: Map<string, T>) =>
    [...m].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([, v]) => v);
  return {
    updates: byKey(new Map([...updates].map(([taskId, status]) => [taskId, { taskId, status }]))),
    completions: byKey(completions),
    statuses: byKey(statuses),
  };
}

/** An outbox row as an {@linkcode OutboxMessage}. */
export function toOutbox(r: Row): OutboxMessage {
  const body = r["body"];
  return {
    taskId: str(r, "task_id"),
    endpointId: str(r, "endpoint_id"),
    body: body instanceof Uint8Array ? body : new Uint8Array(0),
  };
}

/** A `sign_in_attempts` row. */
export interface AttemptRow {
  count: number;
  windowStart: number;
  lockedUntil: number;
}

/** A `sign_in_attempts` row as an {@linkcode AttemptRow}. */
export function toAttempt(row: Row): AttemptRow {
  return {
    count: num(row, "count"),
    windowStart: num(row, "window_start"),
    lockedUntil: num(row, "locked_until"),
  };
}

/** A `sessions` row joined with its user (`id`, `name`) as a {@linkcode SessionRecord}. */
export function toSession(row: Row): SessionRecord {
  return {
    user: { id: str(row, "id"), name: str(row, "name") },
    csrf: str(row, "csrf"),
    expiresAt: num(row, "expires_at"),
  };
}

/** When a row can be forgotten: its window and its lock are both over. */
export function attemptExpiry(row: AttemptRow, limit: AttemptLimit): number {
  return Math.max(row.windowStart + limit.windowS, row.lockedUntil);
}

function bumped(row: AttemptRow | undefined, limit: AttemptLimit, now: number): AttemptRow {
  return !row || now - row.windowStart >= limit.windowS
    ? { count: 1, windowStart: now, lockedUntil: 0 }
    : { count: row.count + 1, windowStart: row.windowStart, lockedUntil: 0 };
}

function lockedRow(limit: AttemptLimit, now: number): AttemptRow {
  return { count: 0, windowStart: now, lockedUntil: now + limit.lockS };
}

function verdictOf(limit: AttemptLimit, row: AttemptRow | undefined, now: number): AttemptVerdict {
  if (row && row.lockedUntil > now) {
    return { key: limit.key, count: 0, lockedUntil: row.lockedUntil };
  }
  return { key: limit.key, count: row?.count ?? 0, lockedUntil: 0 };
}

/** One key's step of a sign-in attempt: the row to write (none: unchanged) and the verdict. */
export type AttemptStep = (
  row: AttemptRow | undefined,
  limit: AttemptLimit,
  now: number,
) => { row: AttemptRow | undefined; verdict: AttemptVerdict };

/**
 * {@linkcode Store.countSignIn} for one key: the row to write (none: unchanged) and the verdict.
 */
export function countAttempt(
  row: AttemptRow | undefined,
  limit: AttemptLimit,
  now: number,
): { row: AttemptRow | undefined; verdict: AttemptVerdict } {
  if ((row && row.lockedUntil > now) || !limit.countUpFront) {
    return { row: undefined, verdict: verdictOf(limit, row, now) };
  }
  let next = bumped(row, limit, now);
  if (next.count > limit.maxFailures) next = lockedRow(limit, now);
  return { row: next, verdict: verdictOf(limit, next, now) };
}

/** {@linkcode Store.failSignIn} for one key: the row to write (none: unchanged) and the verdict. */
export function failAttempt(
  row: AttemptRow | undefined,
  limit: AttemptLimit,
  now: number,
): { row: AttemptRow | undefined; verdict: AttemptVerdict } {
  if (row && row.lockedUntil > now) return { row: undefined, verdict: verdictOf(limit, row, now) };
  let next = limit.countUpFront ? (row ?? bumped(row, limit, now)) : bumped(row, limit, now);
  if (next.count >= limit.maxFailures) next = lockedRow(limit, now);
  return { row: next, verdict: verdictOf(limit, next, now) };
}

/** Limits sorted by key: every writer locks rows in the same order, so none deadlock. */
export function byKey(limits: readonly AttemptLimit[]): AttemptLimit[] {
  return [...limits].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/** Rows of `(id, created_at, status, n)` as task group summaries, in the order first seen. */
export function toGroupSummaries(rows: readonly Row[]): TaskGroupSummary[] {
  const out = new Map<string, TaskGroupSummary>();
  for (const r of rows) {
    const id = str(r, "id");
    let g = out.get(id);
    if (!g) {
      g = { id, createdAt: num(r, "created_at"), total: 0, counts: {} };
      out.set(id, g);
    }
    const status = strOrNull(r, "status");
    if (status === null) continue;
    const n = num(r, "n");
    g.total += n;
    g.counts[status] = (g.counts[status] ?? 0) + n;
  }
  return [...out.values()];
}

/** A `tasks` row (without its result) as a {@linkcode TaskSummary}. */
export function toTaskSummary(row: Row): TaskSummary {
  return {
    id: str(row, "id"),
    functionId: str(row, "function_id"),
    endpointId: str(row, "endpoint_id"),
    status: str(row, "status"),
    createdAt: num(row, "created_at"),
    completionT: numOrNull(row, "completion_t"),
  };
}
