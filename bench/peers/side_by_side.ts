/**
 * The "side by side" part of `deno task bench --peers`: funcX's figures and each peer's (Celery,
 * Dask) from the same run, each the median of its repeated runs with their range, in one table
 * with ratios that read "how many times better funcX is" (above 1: funcX wins that figure), and
 * the record kept in `bench/results/`.
 *
 * @module
 */
import { showSpread, type Spread, spread, spreadByKey } from "../_repeat.ts";

/** What one run of a peer's benchmark measured (the shape `celery_bench.py` prints). */
export interface PeerFigures {
  /** Short name: "Celery", "Dask". */
  name: string;
  /** What ran, with its version and settings. */
  label: string;
  /** Worker processes. */
  workers: number;
  /** Sequential round trips, in milliseconds. */
  roundtrip_ms: { rounds: number; p50: number; p95: number; p99: number; max: number };
  /** All tasks submitted at once, until every result is in hand. */
  throughput: {
    tasks: number;
    tasks_per_s: number;
    total_s: number;
    /** Microseconds of CPU per task, by process. */
    cpu_us_per_task: Record<string, number>;
  };
}

/** The figures every system is compared on. */
export interface PeerSummary {
  /** Throughput: tasks per second, all submitted at once, until every result is in hand. */
  tasks_per_s: number;
  /** Single-task round trip, sequential, in milliseconds. */
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
}

/** The comparable figures of one run of a peer. */
export function peerSummary(f: PeerFigures): PeerSummary {
  const { p50, p95, p99 } = f.roundtrip_ms;
  return { tasks_per_s: f.throughput.tasks_per_s, p50_ms: p50, p95_ms: p95, p99_ms: p99 };
}

/** funcX against a peer; above 1 means funcX is better on that figure. */
export interface PeerRatios {
  /** funcX throughput / the peer's throughput. */
  throughput: number;
  /** The peer's p50 / funcX's p50 (likewise for p95 and p99). */
  p50: number;
  p95: number;
  p99: number;
}

/** How many times better `ours` is than `peer` on each figure. */
export function ratios(ours: PeerSummary, peer: PeerSummary): PeerRatios {
  const r = (a: number, b: number) => (b > 0 ? Number((a / b).toFixed(2)) : 0);
  return {
    throughput: r(ours.tasks_per_s, peer.tasks_per_s),
    p50: r(peer.p50_ms, ours.p50_ms),
    p95: r(peer.p95_ms, ours.p95_ms),
    p99: r(peer.p99_ms, ours.p99_ms),
  };
}

/** One system's repeated runs: each figure's median and range. */
export interface SystemRecord {
  label: string;
  figures: Record<keyof PeerSummary, Spread>;
  cpu_us_per_task: Record<string, Spread>;
  runs: PeerSummary[];
}

/** What `--peers` adds to `roundtrip.json` under `peers`, and writes to `peers.json`. */
export interface PeersRecord {
  funcx: SystemRecord;
  peers: Record<string, SystemRecord>;
  /** funcX against each peer, on the medians. */
  ratios: Record<string, PeerRatios>;
}

function medians(s: SystemRecord): PeerSummary {
  const f = s.figures;
  return {
    tasks_per_s: f.tasks_per_s.median,
    p50_ms: f.p50_ms.median,
    p95_ms: f.p95_ms.median,
    p99_ms: f.p99_ms.median,
  };
}

/** A system's record from its runs' summaries and CPU figures. */
export function systemRecord(
  label: string,
  runs: PeerSummary[],
  cpu: Record<string, number>[],
): SystemRecord {
  return {
    label,
    figures: {
      tasks_per_s: spread(runs.map((r) => r.tasks_per_s)),
      p50_ms: spread(runs.map((r) => r.p50_ms)),
      p95_ms: spread(runs.map((r) => r.p95_ms)),
      p99_ms: spread(runs.map((r) => r.p99_ms)),
    },
    cpu_us_per_task: spreadByKey(cpu),
    runs,
  };
}

/**
 * The record of a `--peers` run: funcX's runs and each peer's (by name), with the ratios of
 * the medians.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peersRecord } from "./side_by_side.ts";
 * const run = (n: number) => ({ tasks_per_s: n, p50_ms: 1000 / n, p95_ms: 2, p99_ms: 3 });
 * const record = peersRecord(
 *   { label: "funcX", runs: [run(4000), run(5000), run(4500)], cpu: [] },
 *   { Celery: { label: "Celery", runs: [run(800), run(1000), run(900)], cpu: [] } },
 * );
 * assert.equal(record.funcx.figures.tasks_per_s.median, 4500);
 * assert.equal(record.ratios.Celery!.throughput, 5);
 * ```
 */
export function peersRecord(
  funcx: { label: string; runs: PeerSummary[]; cpu: Record<string, number>[] },
  peers: Record<string, { label: string; runs: PeerSummary[]; cpu: Record<string, number>[] }>,
): PeersRecord {
  const ours = systemRecord(funcx.label, funcx.runs, funcx.cpu);
  const others = Object.fromEntries(
    Object.entries(peers).map(([name, p]) => [name, systemRecord(p.label, p.runs, p.cpu)]),
  );
  return {
    funcx: ours,
    peers: others,
    ratios: Object.fromEntries(
      Object.entries(others).map(([name, p]) => [name, ratios(medians(ours), medians(p))]),
    ),
  };
}

/**
 * The side-by-side table (Markdown): one row per system, each figure its median over the runs
 * with the range, the ratio rows, then the CPU each peer's processes spent per task.
 */
export function sideBySideTable(record: PeersRecord): string {
  const row = (s: SystemRecord) => {
    const f = s.figures;
    return `| ${s.label} | ${showSpread(f.tasks_per_s, "/s")} | ${showSpread(f.p50_ms, " ms")} | ` +
      `${showSpread(f.p95_ms, " ms")} | ${showSpread(f.p99_ms, " ms")} |`;
  };
  const lines = [
    "| system (median of runs, range) | throughput | p50 | p95 | p99 |",
    "|---|---|---|---|---|",
    row(record.funcx),
    ...Object.values(record.peers).map(row),
    ...Object.entries(record.ratios).map(([name, r]) =>
      `| ratio funcX/${name} (> 1: funcX better) | ${r.throughput}× | ${r.p50}× | ${r.p95}× | ` +
      `${r.p99}× |`
    ),
    "",
  ];
  for (const [name, p] of Object.entries(record.peers)) {
    const cpu = Object.entries(p.cpu_us_per_task).map(([k, v]) => `${k} ${showSpread(v)}`);
    const total = spreadTotal(p.cpu_us_per_task);
    lines.push(`${name} CPU per task (µs, median): ${cpu.join(", ")}; all ${total}`);
  }
  return lines.join("\n");
}

/** The sum of the parts' medians. */
export function spreadTotal(parts: Record<string, Spread>): number {
  return Math.round(Object.values(parts).reduce((n, s) => n + s.median, 0));
}
