/**
 * What the SQLite and PostgreSQL stores share when they read and write rows: the mapping of rows
 * to records, and a result batch put in the order both stores apply it. The tables are in
 * `_store_schema.ts`, sign-in throttling in `_sign_in_attempts.ts`.
 *
 * @module
 */
import type { TaskTransition } from "../sdk/protocol/mod.ts";
import type {
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
    resourceSpecification: row["resource_specification"]
      ? JSON.parse(str(row, "resource_specification"))
      : null,
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

/** A `sessions` row joined with its user (`id`, `name`) as a {@linkcode SessionRecord}. */
export function toSession(row: Row): SessionRecord {
  return {
    user: { id: str(row, "id"), name: str(row, "name") },
    csrf: str(row, "csrf"),
    expiresAt: num(row, "expires_at"),
  };
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
    groupId: str(row, "group_id"),
    functionId: str(row, "function_id"),
    endpointId: str(row, "endpoint_id"),
    status: str(row, "status"),
    createdAt: num(row, "created_at"),
    completionT: numOrNull(row, "completion_t"),
  };
}
