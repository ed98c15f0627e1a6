/**
 * Waiting helpers for tests: for a task's result through the public SDK, or for a future with a
 * time limit.
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

/** A future's value, or a failure naming `what` once `ms` pass without it settling. */
export function settledWithin<T>(future: PromiseLike<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    future,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result in ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
