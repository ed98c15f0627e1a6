/**
 * The shared SQL of tasks: task groups and their result queues, tasks and their counts, the
 * outbox's size, completions and status updates (through the store's `applyResults`), and
 * finishing or releasing idempotency keys.
 *
 * @module
 */
import { SqlAccounts } from "./_sql_accounts.ts";
import { num, str, toTask } from "./_store_rows.ts";
import type { IdempotencyHold, ResultRoute, TaskCompletion, TaskRecord } from "./store.ts";

/** Task groups, tasks and idempotency keys: the same SQL on both databases. */
export abstract class SqlTasks extends SqlAccounts {
  // ---- task groups and tasks ----

  async taskGroupOwner(id: string): Promise<string | undefined> {
    const row = await this.firstRow("SELECT owner_id FROM task_groups WHERE id = ?", [id]);
    return row ? str(row, "owner_id") : undefined;
  }

  async setResultQueue(groupId: string, queue: string): Promise<void> {
    await this.run("UPDATE task_groups SET result_queue = ? WHERE id = ?", [queue, groupId]);
  }

  async setStreamAttached(groupId: string, at: number): Promise<void> {
    await this.run("UPDATE task_groups SET stream_attached_at = ? WHERE id = ?", [at, groupId]);
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
    return num((await this.firstRow("SELECT CAST(count(*) AS INTEGER) AS n FROM outbox"))!, "n");
  }

  async countTasksByStatus(): Promise<Map<string, number>> {
    const rows = await this.all(
      "SELECT status, CAST(count(*) AS INTEGER) AS n FROM tasks GROUP BY status",
    );
    return new Map(rows.map((r) => [str(r, "status"), num(r, "n")]));
  }

  async resultRoutesOf(taskIds: readonly string[]): Promise<Map<string, ResultRoute>> {
    const out = new Map<string, ResultRoute>();
    // In slices, to stay well under either database's limit on bound parameters.
    for (let i = 0; i < taskIds.length; i += 500) {
      const ids = taskIds.slice(i, i + 500);
      const rows = await this.all(
        "SELECT t.id, t.endpoint_id, t.created_at, t.status, g.result_queue, " +
          "g.stream_attached_at FROM tasks t " +
          "LEFT JOIN task_groups g ON g.id = t.group_id " +
          `WHERE t.id IN (${ids.map(() => "?").join(", ")})`,
        ids,
      );
      for (const r of rows) {
        const status = str(r, "status");
        const queue = r["result_queue"];
        const attached = r["stream_attached_at"];
        out.set(str(r, "id"), {
          queue: typeof queue === "string" ? queue : undefined,
          streamAttachedAt: attached === null || attached === undefined
            ? undefined
            : Number(attached),
          endpointId: str(r, "endpoint_id"),
          createdAt: num(r, "created_at"),
          finished: status === "success" || status === "failed",
        });
      }
    }
    return out;
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const row = await this.firstRow("SELECT * FROM tasks WHERE id = ?", [id]);
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
}
