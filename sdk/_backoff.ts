/**
 * The one backoff formula of every retry and reconnect loop (SDK requests, the result stream,
 * the service's broker link, the endpoint daemon's): exponential growth from `minMs`, capped at
 * `maxMs`, with full jitter so that many clients cut off together do not come back together.
 *
 * @module
 */

/** Bounds of {@linkcode backoffDelay}. */
export interface BackoffOptions {
  /** Upper bound of the first delay, in ms. */
  minMs: number;
  /** Largest delay, in ms. */
  maxMs: number;
}

/**
 * The delay before retry `attempt` (1, 2, ...): uniformly random in
 * `[0, min(maxMs, minMs * 2^(attempt-1))]`, and never below `minMs / 2` so a retry loop never spins.
 *
 * @example
 * ```ts
 * import { backoffDelay } from "./_backoff.ts";
 * const d = backoffDelay(10, { minMs: 100, maxMs: 1000 });
 * if (d < 50 || d > 1000) throw new Error(`out of bounds: ${d}`);
 * ```
 */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const cap = Math.min(options.maxMs, options.minMs * 2 ** Math.max(0, attempt - 1));
  return Math.max(options.minMs / 2, Math.random() * cap);
}

/** Sleeps `ms`, or less when `signal` aborts (it resolves then; the caller checks the signal). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
