/**
 * The executor's patience with the service: a call that fails because the service cannot be
 * reached or cannot answer now is sent again, with capped, jittered backoff, until it is answered
 * or the executor is stopped. Used for submits (each with one idempotency key across its
 * attempts) and for reattaching to a task group.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { isTransientError } from "./_client_transport.ts";
import { backoffDelay, sleep } from "./_backoff.ts";

const log = getLogger(["funcx", "sdk", "executor"]);

/** Options of {@linkcode untilAnswered}. */
export interface UntilAnsweredOptions {
  /** What the call is, for logs. */
  what: string;
  /** The executor's name, for logs. */
  label: string;
  /** Stops the retries: the call rejects with the signal's reason. */
  signal: AbortSignal;
}

/**
 * Runs `call` until the service answers: a transient failure (unreachable, 502/503/504, 429)
 * is retried with capped, jittered backoff, for as long as `signal` is not aborted.
 *
 * @example A refusal is thrown at once
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncxAPIError } from "@funcx/sdk";
 * import { untilAnswered } from "./_until_answered.ts";
 * const options = { what: "submit", label: "test", signal: new AbortController().signal };
 * let calls = 0;
 * const refuse = () => {
 *   calls++;
 *   return Promise.reject(new FuncxAPIError(404, "function_not_found", "no such function"));
 * };
 * await assert.rejects(untilAnswered(refuse, options), FuncxAPIError);
 * assert.equal(calls, 1);
 * ```
 */
export async function untilAnswered<T>(
  call: () => Promise<T>,
  options: UntilAnsweredOptions,
): Promise<T> {
  const { signal } = options;
  for (let attempt = 1;; attempt++) {
    if (signal.aborted) throw signal.reason;
    try {
      return await call();
    } catch (err) {
      if (!isTransientError(err) || signal.aborted) throw err;
      const delay = backoffDelay(attempt, { minMs: 500, maxMs: 15_000 });
      log.warn("{label}: {what} waits for the service ({err}); retry in {ms} ms", {
        label: options.label,
        what: options.what,
        err: (err as Error).message,
        ms: Math.round(delay),
      });
      await sleep(delay, signal);
    }
  }
}
