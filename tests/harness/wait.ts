/**
 * Polling helpers for tests: wait for a task's result through the public SDK.
 *
 * @module
 */
import { type FuncXClient, TaskPending } from "../../mod.ts";

/** Polls `getResult` until the task is no longer pending; rethrows its failure. */
export async function waitForResult(
  client: FuncXClient,
  taskId: string,
  timeoutMs = 60_000,
): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    try {
      return await client.getResult(taskId);
    } catch (err) {
      if (!(err instanceof TaskPending)) throw err;
      if (Date.now() > deadline) {
        throw new Error(`Task "${taskId}" still ${err.status} after ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 200);
    }
  }
}
