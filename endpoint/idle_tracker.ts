/**
 * Idle shutdown as in funcX 1.0.13: counted in heartbeats. Once work was done and every task has
 * its result, `soft` idle heartbeats end the endpoint (0 turns that off); `hard` idle heartbeats
 * (at least `soft + 1`) end it whether or not work was ever done.
 *
 * @module
 */

/** Counts idle heartbeats. */
export class IdleTracker {
  readonly #soft: number;
  readonly #hard: number;
  #softCount = 0;
  #hardCount = 0;
  #lastTasks = 0;
  #lastResults = 0;

  /**
   * Builds a tracker.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { IdleTracker } from "./idle_tracker.ts";
   * const idle = new IdleTracker(2, 100);
   * assert.equal(idle.beat(1, 1, 0), undefined); // work moved
   * assert.equal(idle.beat(1, 1, 0), undefined); // idle 1
   * assert.notEqual(idle.beat(1, 1, 0), undefined); // idle 2: stop
   * ```
   */
  constructor(soft: number, hard: number) {
    this.#soft = soft;
    this.#hard = Math.max(soft + 1, hard);
  }

  /** Records a heartbeat; returns why to shut down, or `undefined`. */
  beat(tasks: number, results: number, outstanding: number): string | undefined {
    if (tasks !== this.#lastTasks || results !== this.#lastResults || outstanding > 0) {
      this.#lastTasks = tasks;
      this.#lastResults = results;
      this.#softCount = 0;
      this.#hardCount = 0;
      return undefined;
    }
    this.#hardCount++;
    if (this.#soft > 0 && tasks > 0 && results >= tasks) {
      this.#softCount++;
      if (this.#softCount >= this.#soft) {
        return `idle for ${this.#softCount} heartbeats after its work was done`;
      }
    } else if (this.#hardCount > this.#hard) {
      return `idle for ${this.#hardCount} heartbeats`;
    }
    return undefined;
  }
}
