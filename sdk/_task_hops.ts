/**
 * The hops of a task's trip, from the timestamped transitions that travel with its result
 * (`task_statuses`): how long the task took to reach each state from the one recorded before it.
 * The service and the endpoint daemon feed these to their latency histograms.
 *
 * @module
 */
import type { TaskTransition } from "./protocol/messages.ts";

/** One hop: from the state recorded before to the state reached, in seconds. */
export interface TaskHop {
  /** The state the hop starts from. */
  from: string;
  /** The state it reaches. */
  to: string;
  /** Seconds between the two (0 when clocks of two machines put them out of order). */
  seconds: number;
}

/**
 * The hops between consecutive transitions, in the order they were recorded. Transitions from
 * different machines may be out of order by the clock skew between them: such a hop is 0 s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { taskHops } from "./_task_hops.ts";
 * const hops = taskHops([
 *   { timestamp: 1_000_000_000n, state: "received", actor: "endpoint" },
 *   { timestamp: 1_002_000_000n, state: "running", actor: "interchange" },
 * ]);
 * assert.deepEqual(hops, [{ from: "received", to: "running", seconds: 0.002 }]);
 * ```
 */
export function taskHops(transitions: readonly TaskTransition[]): TaskHop[] {
  const hops: TaskHop[] = [];
  for (let i = 1; i < transitions.length; i++) {
    const a = transitions[i - 1]!;
    const b = transitions[i]!;
    hops.push({ from: a.state, to: b.state, seconds: nsToSeconds(b.timestamp - a.timestamp) });
  }
  return hops;
}

/** Nanoseconds (a difference of two timestamps) as seconds, never negative. */
export function nsToSeconds(ns: bigint): number {
  return ns > 0n ? Number(ns) / 1e9 : 0;
}
