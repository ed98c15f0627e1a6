/**
 * Per-client request rate limit (funcX: 20 requests per 10 s). A fixed window per client; over
 * the limit a request is answered 429 `rate_limited` with `Retry-After`.
 *
 * @module
 */
import { HttpError } from "./http_error.ts";

/** Counts requests per key in fixed windows. */
export class RateLimiter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #windows = new Map<string, { start: number; count: number }>();

  /** `limit` requests per `windowS` seconds; a limit of 0 turns it off. */
  constructor(limit: number, windowS: number) {
    this.#limit = limit;
    this.#windowMs = windowS * 1000;
  }

  /** Counts one request of `key`; throws a 429 when over the limit. */
  check(key: string, now: number = Date.now()): void {
    if (this.#limit <= 0) return;
    let w = this.#windows.get(key);
    if (!w || now - w.start >= this.#windowMs) {
      if (this.#windows.size > 10_000) this.#prune(now);
      w = { start: now, count: 0 };
      this.#windows.set(key, w);
    }
    if (++w.count > this.#limit) {
      const retry = Math.max(1, Math.ceil((w.start + this.#windowMs - now) / 1000));
      throw new HttpError(
        429,
        "rate_limited",
        `Rate limit of ${this.#limit} requests per ${this.#windowMs / 1000} s exceeded: ` +
          `retry in ${retry} s, and batch submissions (Batch, FuncXExecutor) to make fewer requests`,
        [this.#limit, this.#windowMs / 1000],
        undefined,
        {},
        { "retry-after": String(retry) },
      );
    }
  }

  #prune(now: number): void {
    for (const [k, w] of this.#windows) {
      if (now - w.start >= this.#windowMs) this.#windows.delete(k);
    }
  }
}
