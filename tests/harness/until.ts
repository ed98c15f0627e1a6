/**
 * Waiting for a condition instead of sleeping a fixed time: tests poll what they wait for.
 *
 * @module
 */

/**
 * Polls `check` until it returns something other than `undefined`, `null` or `false`, and
 * returns that; throws naming `what` after `timeoutMs`.
 *
 * @example
 * ```ts
 * import { until } from "./until.ts";
 * const started = Date.now();
 * const late = await until("a few ms to pass", () => Date.now() - started >= 5 && "late");
 * console.assert(late === "late");
 * ```
 */
export async function until<T>(
  what: string,
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 30_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`Gave up waiting for ${what} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
