/**
 * What makes a benchmark honest on a shared machine: each figure measured several times and
 * given as its median with the range, and a warning when the load average shows other work.
 *
 * @module
 */

/** A figure over several runs: its median and its range. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  /** Every run's value, in run order. */
  runs: number[];
}

/**
 * The median (the mean of the middle two for an even count) and range of `values`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { spread } from "./_repeat.ts";
 * assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3, runs: [3, 1, 2] });
 * assert.equal(spread([4, 1, 2, 3]).median, 2.5);
 * ```
 */
export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError("Cannot take the median of no runs");
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median: round2(median), min: s[0]!, max: s.at(-1)!, runs: [...values] };
}

/** The spread of each key over runs of records with the same keys. */
export function spreadByKey(runs: readonly Record<string, number>[]): Record<string, Spread> {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(keys.map((k) => [k, spread(runs.map((r) => r[k] ?? 0))]));
}

/**
 * `median (min–max)` with `unit`, or the value alone when every run gave the same.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { showSpread, spread } from "./_repeat.ts";
 * assert.equal(showSpread(spread([2.5, 3, 4]), " ms"), "3 ms (2.5–4)");
 * ```
 */
export function showSpread(s: Spread, unit = ""): string {
  return s.min === s.max ? `${s.median}${unit}` : `${s.median}${unit} (${s.min}–${s.max})`;
}

/** `n` rounded to two decimals. */
export function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/**
 * The value at fraction `p` (0..1) of `sorted` (ascending, not empty): the nearest rank at or
 * below it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { percentile } from "./_repeat.ts";
 * assert.equal(percentile([1, 2, 3, 4], 0.5), 3);
 * assert.equal(percentile([1, 2, 3, 4], 0.99), 4);
 * ```
 */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/** The 1, 5 and 15 minute load averages. */
export function loadAverage(): [number, number, number] {
  const [a, b, c] = Deno.readTextFileSync("/proc/loadavg").split(" ").map(Number);
  return [a!, b!, c!];
}

/**
 * A warning when the 1-minute load average shows other work than the benchmark's own: above
 * `quiet` (by default 0.75 per core: 1.5 on 2 cores); `undefined` when the machine is quiet.
 */
export function loadWarning(
  cores = navigator.hardwareConcurrency,
  quiet = 0.75 * cores,
): string | undefined {
  const [one, five] = loadAverage();
  if (one <= quiet) return undefined;
  return `the load average is ${one} (5 min: ${five}) on ${cores} cores: other work is running, ` +
    `so these figures are lower and noisier than on a quiet machine (quiet: below ${quiet})`;
}

/**
 * The machine's CPU time so far, in clock ticks (`USER_HZ` = 100 on Linux): all of it, in user
 * and system mode, and what the hypervisor took.
 */
export interface CpuTimes {
  total: number;
  /** User mode, `nice` included. */
  user: number;
  system: number;
  /** Time the hypervisor gave to other machines while this one wanted to run (`steal`). */
  steal: number;
}

/** Reads {@linkcode CpuTimes} from the first line of `/proc/stat`. */
export function cpuTimes(): CpuTimes {
  const line = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0]!;
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return {
    total: ticks.reduce((a, b) => a + b, 0),
    user: (ticks[0] ?? 0) + (ticks[1] ?? 0),
    system: ticks[2] ?? 0,
    steal: ticks[7] ?? 0,
  };
}

/**
 * The share of the machine's CPU time, in percent, that the hypervisor took between two
 * readings: on a virtual machine, work the benchmark wanted to do and could not.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stealPercent } from "./_repeat.ts";
 * assert.equal(stealPercent({ total: 1000, steal: 10 }, { total: 1200, steal: 30 }), 10);
 * assert.equal(stealPercent({ total: 5, steal: 0 }, { total: 5, steal: 0 }), 0);
 * ```
 */
export function stealPercent(
  before: Pick<CpuTimes, "total" | "steal">,
  after: Pick<CpuTimes, "total" | "steal">,
): number {
  const total = after.total - before.total;
  return total > 0 ? round2(((after.steal - before.steal) / total) * 100) : 0;
}

/** A warning when the hypervisor took more than `limit` percent of the CPU time of a run. */
export function stealWarning(percent: number, limit = 5): string | undefined {
  if (percent <= limit) return undefined;
  return `the hypervisor took ${percent} % of this machine's CPU time during the runs (steal): ` +
    `the figures are lower and noisier than the same code gives alone`;
}
