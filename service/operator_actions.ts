/**
 * What an owner can do to their tasks and endpoints, the same from the REST API
 * (`routes/tasks.ts`, `routes/endpoints.ts`) and from the dashboard's forms
 * (`dashboard/_actions.ts`): cancel tasks, lock, unlock and delete an endpoint. Callers have
 * checked the owner; these change the store first (the truth), then tell the endpoint over the
 * broker, best effort.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { packMessage, serialize } from "../sdk/protocol/mod.ts";
import type { AppDeps } from "./context.ts";

const log = getLogger(["funcx", "service", "actions"]);

/** What the actions need of the app. */
export type ActionDeps = Pick<AppDeps, "store" | "broker">;

/** The command that tells a running endpoint to shut down. */
export function shutdownCommand(reason: string): Uint8Array {
  return packMessage({ message_type: "command", data: { command: "shutdown", args: { reason } } });
}

/**
 * Fails unfinished tasks as `TaskCancelled` (a task that has its result keeps it), tells the
 * result streams of their groups (so a waiting future settles, whoever cancelled), and asks their
 * endpoints to stop them if they are queued or running there; a late result is dropped.
 */
export async function cancelTasks(
  deps: ActionDeps,
  tasks: ReadonlyArray<{ id: string; endpointId: string }>,
): Promise<void> {
  if (tasks.length === 0) return;
  const reason = "Task was cancelled by its owner";
  const data = serialize({ name: "TaskCancelled", message: reason, stack: "" });
  const ids = tasks.map((t) => t.id);
  await deps.store.failTasks(ids, "TaskCancelled", data);
  // Only the tasks this cancel failed: one that finished meanwhile keeps its real outcome.
  const [after, queues] = await Promise.all([
    Promise.all(ids.map((id) => deps.store.getTask(id))),
    deps.store.resultQueuesOf(ids),
  ]);
  const forwards: Array<{ routingKey: string; body: Uint8Array }> = [];
  for (const t of after) {
    const queue = t && t.errorCode === "TaskCancelled" ? queues.get(t.id) : undefined;
    if (!t || queue === undefined) continue;
    forwards.push({
      routingKey: queue,
      body: packMessage({
        message_type: "result",
        data: {
          task_id: t.id,
          data,
          error_details: { code: "TaskCancelled", user_message: reason },
          task_statuses: null,
        },
      }),
    });
  }
  await deps.broker.forward(forwards).catch((err) =>
    log.warn("Cannot tell the result streams of {n} cancelled tasks: {err}", {
      n: forwards.length,
      err: String(err),
    })
  );
  await Promise.all(tasks.map((t) =>
    deps.broker.publishToEndpoint(
      t.endpointId,
      packMessage({ message_type: "task_cancel", data: { task_id: t.id } }),
    ).catch(() => {})
  ));
}

/**
 * Locks an endpoint for `seconds` (registrations are refused till then) and tells it to shut
 * down; when the lock ends (epoch seconds).
 */
export async function lockEndpoint(
  deps: ActionDeps,
  endpointId: string,
  seconds: number,
): Promise<number> {
  const until = Date.now() / 1000 + seconds;
  await deps.store.lockEndpoint(endpointId, until);
  await deps.broker.publishToEndpoint(endpointId, shutdownCommand("stopped remotely (lock)"));
  return until;
}

/** Ends an endpoint's lock: it may register (start) again at once. */
export async function unlockEndpoint(deps: ActionDeps, endpointId: string): Promise<void> {
  await deps.store.lockEndpoint(endpointId, 0);
}

/**
 * Deletes an endpoint for good: a running endpoint is told to stop, then its queue (and any
 * tasks still in it) go away.
 */
export async function deleteEndpoint(deps: ActionDeps, endpointId: string): Promise<void> {
  await deps.store.deleteEndpoint(endpointId);
  await deps.broker.publishToEndpoint(endpointId, shutdownCommand("endpoint deleted"))
    .catch(() => {});
  await deps.broker.deleteEndpointQueue(endpointId).catch((err) =>
    log.warn("Cannot delete the task queue of {id}: {err}", { id: endpointId, err: String(err) })
  );
}
