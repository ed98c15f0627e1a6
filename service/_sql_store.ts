/**
 * The statements the SQLite and PostgreSQL stores share: every {@linkcode Store} method that is
 * one statement (or reads after an idempotent write) in the same SQL on both databases. Each store
 * extends {@linkcode SqlStore} with how it runs a statement, and keeps to itself what differs
 * between the databases: transactions, row locks, `RETURNING` and bulk statements.
 *
 * This file holds functions, containers, endpoints and the dashboard's reads and searches; it
 * builds on `_sql_tasks.ts` (tasks, idempotency keys), `_sql_accounts.ts` (users, tokens,
 * sessions) and `_sql_base.ts` (how a statement runs), one layer each.
 *
 * Statements here are written with `?` placeholders; the PostgreSQL store numbers them.
 *
 * @module
 */
import type { Param } from "./_sql_base.ts";
import { SqlTasks } from "./_sql_tasks.ts";
import {
  num,
  str,
  toContainer,
  toEndpoint,
  toFunction,
  toGroupSummaries,
  toTaskSummary,
} from "./_store_rows.ts";
import type {
  ContainerRecord,
  EndpointRecord,
  EndpointStatus,
  FunctionRecord,
  PageRequest,
  SearchPage,
  TaskFilter,
  TaskGroupSummary,
  TaskSummary,
  UptimeSegment,
} from "./store.ts";

export { type Param, UPTIME_KEPT_S } from "./_sql_base.ts";

/** The part of a {@linkcode Store} that is the same SQL on SQLite and on PostgreSQL. */
export abstract class SqlStore extends SqlTasks {
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
    const row = await this.firstRow("SELECT * FROM functions WHERE id = ?", [id]);
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
    const row = await this.firstRow("SELECT * FROM containers WHERE id = ?", [id]);
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
    const row = await this.firstRow("SELECT * FROM endpoints WHERE id = ?", [id]);
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
    return await this.firstRow(
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
    const row = await this.firstRow(
      "SELECT state, expires_at FROM endpoint_status WHERE endpoint_id = ? AND expires_at > ?",
      [endpointId, now],
    );
    return row
      ? { endpointId, state: JSON.parse(str(row, "state")), expiresAt: num(row, "expires_at") }
      : undefined;
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
