/**
 * The statements the SQLite and PostgreSQL stores share: every {@linkcode Store} method that is
 * one statement (or reads after an idempotent write) in the same SQL on both databases. Each store
 * extends {@linkcode SqlStore} with how it runs a statement, and keeps to itself what differs
 * between the databases: transactions, row locks, `RETURNING` and bulk statements.
 *
 * Statements here are written with `?` placeholders; the PostgreSQL store numbers them.
 *
 * @module
 */
import {
  num,
  type Row,
  str,
  strOrNull,
  toContainer,
  toDeviceCode,
  toEndpoint,
  toFunction,
  toGroupSummaries,
  toSession,
  toTask,
  toTaskSummary,
} from "./_store_rows.ts";
import type {
  ContainerRecord,
  DeviceCodeRecord,
  EndpointRecord,
  EndpointStatus,
  FunctionRecord,
  IdempotencyHold,
  PageRequest,
  ResultBatch,
  SearchPage,
  SessionRecord,
  TaskCompletion,
  TaskFilter,
  TaskGroupSummary,
  TaskRecord,
  TaskSummary,
  UptimeSegment,
  UserRecord,
} from "./store.ts";

/** A value bound to a `?` placeholder. */
export type Param = string | number | null;

/** Seconds an endpoint's online periods are kept after they end. */
export const UPTIME_KEPT_S = 7 * 86400;

/** The part of a {@linkcode Store} that is the same SQL on SQLite and on PostgreSQL. */
export abstract class SqlStore {
  /** The rows of one statement written with `?` placeholders. */
  protected abstract all(sql: string, params?: readonly Param[]): Promise<Row[]>;
  /** Runs one statement written with `?` placeholders; how many rows it changed. */
  protected abstract run(sql: string, params?: readonly Param[]): Promise<number>;
  /** Writes a result batch in one transaction; returns how many tasks it completed. */
  abstract applyResults(batch: ResultBatch): Promise<number>;

  async #one(sql: string, params?: readonly Param[]): Promise<Row | undefined> {
    return (await this.all(sql, params))[0];
  }

  // ---- users, clients, tokens ----

  async ensureUser(name: string, passwordHash: string | null = null): Promise<UserRecord> {
    await this.run(
      "INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (name) DO NOTHING",
      [crypto.randomUUID(), name, passwordHash, Date.now() / 1000],
    );
    const row = (await this.#one("SELECT id, name FROM users WHERE name = ?", [name]))!;
    return { id: str(row, "id"), name: str(row, "name") };
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.all("SELECT id, name FROM users ORDER BY name")).map((r) => ({
      id: str(r, "id"),
      name: str(r, "name"),
    }));
  }

  async addClient(id: string, userId: string, secretHash: string, name: string): Promise<void> {
    await this.run(
      "INSERT INTO clients (id, user_id, secret_hash, name, created_at) VALUES (?, ?, ?, ?, ?)",
      [id, userId, secretHash, name, Date.now() / 1000],
    );
  }

  async getClient(id: string): Promise<{ userId: string; secretHash: string } | undefined> {
    const row = await this.#one("SELECT user_id, secret_hash FROM clients WHERE id = ?", [id]);
    return row ? { userId: str(row, "user_id"), secretHash: str(row, "secret_hash") } : undefined;
  }

  async addToken(
    hash: string,
    userId: string,
    clientId: string | null,
    expiresAt: number,
    kind: "access" | "refresh" = "access",
  ): Promise<void> {
    await this.run(
      "INSERT INTO tokens (hash, user_id, client_id, kind, expires_at) VALUES (?, ?, ?, ?, ?)",
      [hash, userId, clientId, kind, expiresAt],
    );
  }

  async userForToken(
    hash: string,
    now: number,
    kind: "access" | "refresh" = "access",
  ): Promise<(UserRecord & { clientId: string | null }) | undefined> {
    const row = await this.#one(
      "SELECT u.id, u.name, t.client_id FROM tokens t JOIN users u ON u.id = t.user_id " +
        "WHERE t.hash = ? AND t.expires_at > ? AND t.kind = ?",
      [hash, now, kind],
    );
    return row
      ? { id: str(row, "id"), name: str(row, "name"), clientId: strOrNull(row, "client_id") }
      : undefined;
  }

  async deleteToken(hash: string): Promise<boolean> {
    return await this.run("DELETE FROM tokens WHERE hash = ?", [hash]) > 0;
  }

  async setPassword(userId: string, passwordHash: string): Promise<void> {
    await this.run("UPDATE users SET password_hash = ? WHERE id = ?", [passwordHash, userId]);
  }

  async userByName(
    name: string,
  ): Promise<(UserRecord & { passwordHash: string | null }) | undefined> {
    const row = await this.#one("SELECT id, name, password_hash FROM users WHERE name = ?", [name]);
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
    await this.run(
      "INSERT INTO device_codes (hash, user_code, client_id, status, expires_at) " +
        "VALUES (?, ?, ?, 'pending', ?)",
      [hash, userCode, clientId, expiresAt],
    );
  }

  async deviceCode(hash: string): Promise<DeviceCodeRecord | undefined> {
    const row = await this.#one("SELECT * FROM device_codes WHERE hash = ?", [hash]);
    return row ? toDeviceCode(row) : undefined;
  }

  async deviceCodeByUserCode(userCode: string): Promise<DeviceCodeRecord | undefined> {
    const row = await this.#one("SELECT * FROM device_codes WHERE user_code = ?", [userCode]);
    return row ? toDeviceCode(row) : undefined;
  }

  async decideDeviceCode(
    hash: string,
    status: "approved" | "denied",
    userId: string | null,
  ): Promise<void> {
    await this.run(
      "UPDATE device_codes SET status = ?, user_id = ? WHERE hash = ? AND status = 'pending'",
      [status, userId, hash],
    );
  }

  async deleteDeviceCode(hash: string): Promise<boolean> {
    return await this.run("DELETE FROM device_codes WHERE hash = ?", [hash]) > 0;
  }

  // ---- functions and containers ----

  async addFunction(fn: FunctionRecord): Promise<void> {
    await this.run(
      "INSERT INTO functions (id, owner_id, name, code, description, public, container_id, " +
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      [
        fn.id,
        fn.ownerId,
        fn.name,
        fn.code,
        fn.description,
        fn.public ? 1 : 0,
        fn.containerId,
        fn.createdAt,
      ],
    );
  }

  async getFunction(id: string): Promise<FunctionRecord | undefined> {
    const row = await this.#one("SELECT * FROM functions WHERE id = ?", [id]);
    return row ? toFunction(row) : undefined;
  }

  async addContainer(c: ContainerRecord): Promise<void> {
    await this.run(
      "INSERT INTO containers (id, owner_id, name, description, type, location, created_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
      [c.id, c.ownerId, c.name, c.description, c.type, c.location, c.createdAt],
    );
  }

  async getContainer(id: string): Promise<ContainerRecord | undefined> {
    const row = await this.#one("SELECT * FROM containers WHERE id = ?", [id]);
    return row ? toContainer(row) : undefined;
  }

  // ---- endpoints ----

  async upsertEndpoint(
    ep: Omit<EndpointRecord, "createdAt" | "lastRegisteredAt" | "lockedUntil" | "deleted">,
  ): Promise<boolean> {
    const now = Date.now() / 1000;
    return await this.run(
      "INSERT INTO endpoints (id, owner_id, name, metadata, created_at, last_registered_at) " +
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, " +
        "metadata = excluded.metadata, last_registered_at = excluded.last_registered_at " +
        "WHERE endpoints.owner_id = excluded.owner_id AND endpoints.deleted = 0",
      [ep.id, ep.ownerId, ep.name, JSON.stringify(ep.metadata), now, now],
    ) > 0;
  }

  async getEndpoint(id: string): Promise<EndpointRecord | undefined> {
    const row = await this.#one("SELECT * FROM endpoints WHERE id = ?", [id]);
    return row ? toEndpoint(row) : undefined;
  }

  async listEndpoints(ownerId: string): Promise<EndpointRecord[]> {
    return (await this.all(
      "SELECT * FROM endpoints WHERE owner_id = ? AND deleted = 0 ORDER BY created_at, id",
      [ownerId],
    )).map(toEndpoint);
  }

  async lockEndpoint(id: string, until: number): Promise<void> {
    await this.run("UPDATE endpoints SET locked_until = ? WHERE id = ?", [until, id]);
  }

  async unshareEndpoint(endpointId: string, userId: string): Promise<boolean> {
    return await this.run("DELETE FROM endpoint_users WHERE endpoint_id = ? AND user_id = ?", [
      endpointId,
      userId,
    ]) > 0;
  }

  async isSharedWith(endpointId: string, userId: string): Promise<boolean> {
    return await this.#one(
      "SELECT 1 AS shared FROM endpoint_users WHERE endpoint_id = ? AND user_id = ?",
      [endpointId, userId],
    ) !== undefined;
  }

  async sharedWith(endpointId: string): Promise<string[]> {
    return (await this.all(
      "SELECT u.name FROM endpoint_users e JOIN users u ON u.id = e.user_id " +
        "WHERE e.endpoint_id = ? ORDER BY u.name",
      [endpointId],
    )).map((r) => str(r, "name"));
  }

  async whitelist(endpointId: string): Promise<string[]> {
    return (await this.all(
      "SELECT function_id FROM endpoint_whitelist WHERE endpoint_id = ? ORDER BY function_id",
      [endpointId],
    )).map((r) => str(r, "function_id"));
  }

  async removeFromWhitelist(endpointId: string, functionId: string): Promise<boolean> {
    return await this.run(
      "DELETE FROM endpoint_whitelist WHERE endpoint_id = ? AND function_id = ?",
      [endpointId, functionId],
    ) > 0;
  }

  async endpointStatus(endpointId: string, now: number): Promise<EndpointStatus | undefined> {
    const row = await this.#one(
      "SELECT state, expires_at FROM endpoint_status WHERE endpoint_id = ? AND expires_at > ?",
      [endpointId, now],
    );
    return row
      ? { endpointId, state: JSON.parse(str(row, "state")), expiresAt: num(row, "expires_at") }
      : undefined;
  }

  // ---- task groups and tasks ----

  async taskGroupOwner(id: string): Promise<string | undefined> {
    const row = await this.#one("SELECT owner_id FROM task_groups WHERE id = ?", [id]);
    return row ? str(row, "owner_id") : undefined;
  }

  async setResultQueue(groupId: string, queue: string): Promise<void> {
    await this.run("UPDATE task_groups SET result_queue = ? WHERE id = ?", [queue, groupId]);
  }

  /** The result queues of those of `taskIds` whose group has one, by task id. */
  abstract resultQueuesOf(taskIds: readonly string[]): Promise<Map<string, string>>;

  async resultQueueOf(taskId: string): Promise<string | undefined> {
    return (await this.resultQueuesOf([taskId])).get(taskId);
  }

  async taskGroupTasks(groupId: string): Promise<string[]> {
    return (await this.all("SELECT id FROM tasks WHERE group_id = ? ORDER BY created_at, id", [
      groupId,
    ])).map((r) => str(r, "id"));
  }

  async outboxSize(): Promise<number> {
    return num((await this.#one("SELECT CAST(count(*) AS INTEGER) AS n FROM outbox"))!, "n");
  }

  async countTasksByStatus(): Promise<Map<string, number>> {
    const rows = await this.all(
      "SELECT status, CAST(count(*) AS INTEGER) AS n FROM tasks GROUP BY status",
    );
    return new Map(rows.map((r) => [str(r, "status"), num(r, "n")]));
  }

  async unfinishedTaskCreatedAt(taskIds: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    // In slices, to stay well under either database's limit on bound parameters.
    for (let i = 0; i < taskIds.length; i += 500) {
      const ids = taskIds.slice(i, i + 500);
      const rows = await this.all(
        `SELECT id, created_at FROM tasks WHERE id IN (${ids.map(() => "?").join(", ")}) ` +
          "AND status NOT IN ('success', 'failed')",
        ids,
      );
      for (const r of rows) out.set(str(r, "id"), num(r, "created_at"));
    }
    return out;
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const row = await this.#one("SELECT * FROM tasks WHERE id = ?", [id]);
    return row ? toTask(row) : undefined;
  }

  async completeTasks(completions: readonly TaskCompletion[]): Promise<number> {
    return await this.applyResults({ updates: [], completions });
  }

  async updateStatuses(updates: ReadonlyArray<{ taskId: string; status: string }>): Promise<void> {
    await this.applyResults({ updates, completions: [] });
  }

  // ---- idempotency keys ----

  async finishIdempotencyKey(
    hold: IdempotencyHold,
    response: { status: number; body: string },
  ): Promise<boolean> {
    return await this.run(
      "UPDATE idempotency_keys SET state = 'done', response_status = ?, response_body = ? " +
        "WHERE user_id = ? AND idem_key = ? AND token = ? AND state = 'in_progress'",
      [response.status, response.body, hold.userId, hold.key, hold.token],
    ) > 0;
  }

  async releaseIdempotencyKey(hold: IdempotencyHold): Promise<void> {
    await this.run(
      "DELETE FROM idempotency_keys WHERE user_id = ? AND idem_key = ? AND token = ? " +
        "AND state = 'in_progress'",
      [hold.userId, hold.key, hold.token],
    );
  }

  // ---- dashboard sessions ----

  async addSession(hash: string, userId: string, csrf: string, expiresAt: number): Promise<void> {
    await this.run(
      "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
      [hash, userId, csrf, Date.now() / 1000, expiresAt],
    );
  }

  async sessionFor(hash: string, now: number): Promise<SessionRecord | undefined> {
    const row = await this.#one(
      "SELECT u.id, u.name, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id " +
        "WHERE s.hash = ? AND s.expires_at > ?",
      [hash, now],
    );
    return row ? toSession(row) : undefined;
  }

  async deleteSession(hash: string): Promise<boolean> {
    return await this.run("DELETE FROM sessions WHERE hash = ?", [hash]) > 0;
  }

  async passSignIn(key: string): Promise<void> {
    await this.run("DELETE FROM sign_in_attempts WHERE attempt_key = ?", [key]);
  }

  // ---- dashboard reads ----

  async listFunctions(ownerId: string, limit: number): Promise<FunctionRecord[]> {
    return (await this.all(
      "SELECT * FROM functions WHERE owner_id = ? ORDER BY created_at DESC, id LIMIT ?",
      [ownerId, limit],
    )).map(toFunction);
  }

  async listTaskGroups(ownerId: string, limit: number): Promise<TaskGroupSummary[]> {
    return toGroupSummaries(
      await this.all(
        "SELECT g.id, g.created_at, t.status, CAST(count(*) AS INTEGER) AS n FROM task_groups g " +
          "JOIN tasks t ON t.group_id = g.id WHERE g.id IN (SELECT g2.id FROM task_groups g2 " +
          "WHERE g2.owner_id = ? AND EXISTS (SELECT 1 FROM tasks t2 WHERE t2.group_id = g2.id) " +
          "ORDER BY g2.created_at DESC LIMIT ?) GROUP BY g.id, g.created_at, t.status " +
          "ORDER BY g.created_at DESC, g.id",
        [ownerId, limit],
      ),
    );
  }

  async taskGroupSummary(groupId: string): Promise<TaskGroupSummary | undefined> {
    return toGroupSummaries(
      await this.all(
        "SELECT g.id, g.created_at, t.status, CAST(count(t.id) AS INTEGER) AS n " +
          "FROM task_groups g LEFT JOIN tasks t ON t.group_id = g.id WHERE g.id = ? " +
          "GROUP BY g.id, g.created_at, t.status",
        [groupId],
      ),
    )[0];
  }

  async listGroupTasks(groupId: string, limit: number): Promise<TaskSummary[]> {
    return (await this.all(
      "SELECT id, group_id, function_id, endpoint_id, status, created_at, completion_t " +
        "FROM tasks WHERE group_id = ? ORDER BY created_at, id LIMIT ?",
      [groupId, limit],
    )).map(toTaskSummary);
  }

  async searchTasks(
    ownerId: string,
    filter: TaskFilter,
    page: PageRequest,
  ): Promise<SearchPage<TaskSummary>> {
    const [where, params] = taskWhere("t", ownerId, filter);
    const order = page.oldestFirst ? "ASC" : "DESC";
    const [rows, count] = await Promise.all([
      this.all(
        "SELECT t.id, t.group_id, t.function_id, t.endpoint_id, t.status, t.created_at, " +
          `t.completion_t FROM tasks t WHERE ${where} ` +
          `ORDER BY t.created_at ${order}, t.id ${order} LIMIT ? OFFSET ?`,
        [...params, page.limit, page.offset],
      ),
      this.all(`SELECT CAST(count(*) AS INTEGER) AS n FROM tasks t WHERE ${where}`, params),
    ]);
    return { items: rows.map(toTaskSummary), total: num(count[0]!, "n") };
  }

  async searchTaskGroups(
    ownerId: string,
    filter: TaskFilter,
    page: PageRequest,
  ): Promise<SearchPage<TaskGroupSummary>> {
    const { groupId: _, ...rest } = filter;
    const [where, params] = taskWhere("t2", ownerId, rest);
    // A group matches when one of its tasks does; its counts are over all its tasks.
    const matching =
      "FROM task_groups g2 WHERE g2.owner_id = ? AND EXISTS (SELECT 1 FROM tasks t2 " +
      `WHERE t2.group_id = g2.id AND ${where})`;
    const order = page.oldestFirst ? "ASC" : "DESC";
    const [rows, count] = await Promise.all([
      this.all(
        "SELECT g.id, g.created_at, t.status, CAST(count(*) AS INTEGER) AS n FROM task_groups g " +
          `JOIN tasks t ON t.group_id = g.id WHERE g.id IN (SELECT g2.id ${matching} ` +
          `ORDER BY g2.created_at ${order}, g2.id ${order} LIMIT ? OFFSET ?) ` +
          `GROUP BY g.id, g.created_at, t.status ORDER BY g.created_at ${order}, g.id ${order}`,
        [ownerId, ...params, page.limit, page.offset],
      ),
      this.all(`SELECT CAST(count(*) AS INTEGER) AS n ${matching}`, [ownerId, ...params]),
    ]);
    return { items: toGroupSummaries(rows), total: num(count[0]!, "n") };
  }

  async endpointUptime(endpointId: string, since: number): Promise<UptimeSegment[]> {
    return (await this.all(
      "SELECT since, last_report_at, until FROM endpoint_uptime WHERE endpoint_id = ? " +
        "AND until > ? ORDER BY since",
      [endpointId, since],
    )).map((r) => ({
      since: num(r, "since"),
      lastReportAt: num(r, "last_report_at"),
      until: num(r, "until"),
    }));
  }
}

/** The `WHERE` of a search of `ownerId`'s tasks (alias `t`) by `filter`, and its parameters. */
function taskWhere(t: string, ownerId: string, filter: TaskFilter): [string, Param[]] {
  const parts = [`${t}.owner_id = ?`];
  const params: Param[] = [ownerId];
  const eq = (column: string, value: string | number | undefined, op = "=") => {
    if (value === undefined) return;
    parts.push(`${t}.${column} ${op} ?`);
    params.push(value);
  };
  eq("group_id", filter.groupId);
  eq("function_id", filter.functionId);
  eq("endpoint_id", filter.endpointId);
  eq("created_at", filter.since, ">=");
  eq("created_at", filter.until, "<");
  if (filter.statuses !== undefined) {
    // No status at all matches nothing (an empty IN list is not SQL).
    if (filter.statuses.length === 0) parts.push("1 = 0");
    else parts.push(`${t}.status IN (${filter.statuses.map(() => "?").join(", ")})`);
    params.push(...filter.statuses);
  }
  return [parts.join(" AND "), params];
}
