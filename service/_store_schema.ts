/**
 * The tables of the SQLite and PostgreSQL stores (one text, with the column types that differ
 * filled in per database), and the one statement both run with their own placeholders.
 *
 * @module
 */
import type { IdempotencyRequest, ReserveOptions } from "./store.ts";

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
  expires_at ${real} NOT NULL, resource_specification TEXT);
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
CREATE INDEX IF NOT EXISTS tasks_owner_created ON tasks(owner_id, created_at);
`;
}

/**
 * Columns added since a table was first created, as `[table, column, type]`: a store opened on an
 * older database adds those it lacks (PostgreSQL with `ADD COLUMN IF NOT EXISTS` after
 * {@linkcode schema}, SQLite after reading `PRAGMA table_info`). New ones go at the end.
 */
export const ADDED_COLUMNS: ReadonlyArray<readonly [string, string, string]> = [
  // An MPI task's resource specification, as JSON (null for other tasks).
  ["tasks", "resource_specification", "TEXT"],
  // When a result stream last attached to the group (epoch seconds; null: none since this column
  // came): results of tasks submitted before it are forwarded, since the stream's queue may have
  // been bound after they left their endpoint.
  ["task_groups", "stream_attached_at", "DOUBLE PRECISION"],
];

/** PostgreSQL's statements adding {@linkcode ADDED_COLUMNS} to an older database. */
export function addedColumnsSql(): string {
  return ADDED_COLUMNS.map(([t, c, type]) =>
    `ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS ${c} ${type};`
  )
    .join("\n");
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

/** The values of {@linkcode reserveSql}'s placeholders, in order, for the attempt `token`. */
export function reserveParams(
  request: IdempotencyRequest,
  token: string,
  options: ReserveOptions,
): Array<string | number> {
  const { now } = options;
  return [
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
}
