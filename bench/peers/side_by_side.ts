/**
 * The "side by side" part of `deno task bench --peers`: funcX's and Celery's figures from the
 * same run in one table, with ratios that read "how many times better funcX is" (above 1: funcX
 * wins that figure), and the record kept in `bench/results/`.
 *
 * @module
 */
import type { CeleryFigures } from "./celery.ts";

/** The figures every system is compared on. */
export interface PeerSummary {
  /** Throughput: tasks per second, all submitted at once, until every result is in hand. */
  tasks_per_s: number;
  /** Single-task round trip, sequential, in milliseconds. */
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
}

/** funcX against Celery; above 1 means funcX is better on that figure. */
export interface PeerRatios {
  /** funcX throughput / Celery throughput. */
  throughput: number;
  /** Celery p50 / funcX p50 (likewise for p95 and p99). */
  p50: number;
  p95: number;
  p99: number;
}

/** What `--peers` adds to `roundtrip.json` under `peers`, and writes to `peers.json`. */
export interface PeersRecord {
  funcx: PeerSummary;
  celery: CeleryFigures;
  ratios: { celery: PeerRatios };
}

/** The comparable figures of a Celery run. */
export function celerySummary(celery: CeleryFigures): PeerSummary {
  const { p50, p95, p99 } = celery.roundtrip_ms;
  return { tasks_per_s: celery.throughput.tasks_per_s, p50_ms: p50, p95_ms: p95, p99_ms: p99 };
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

/** The record of a `--peers` run. */
export function peersRecord(funcx: PeerSummary, celery: CeleryFigures): PeersRecord {
  return { funcx, celery, ratios: { celery: ratios(funcx, celerySummary(celery)) } };
}

/**
 * The side-by-side table (Markdown), one row per system and the ratio row, then the CPU each of
 * Celery's processes spent per task (funcX's is in the first table).
 */
export function sideBySideTable(record: PeersRecord): string {
  const row = (name: string, s: PeerSummary) =>
    `| ${name} | ${s.tasks_per_s}/s | ${s.p50_ms} ms | ${s.p95_ms} ms | ${s.p99_ms} ms |`;
  const { celery } = record;
  const r = record.ratios.celery;
  return [
    "| system | throughput | p50 | p95 | p99 |",
    "|---|---|---|---|---|",
    row("funcX", record.funcx),
    row(
      `Celery ${celery.celery} (${celery.workers} prefork, prefetch ${celery.prefetch_multiplier})`,
      celerySummary(celery),
    ),
    `| ratio funcX/Celery (> 1: funcX better) | ${r.throughput}× | ${r.p50}× | ${r.p95}× | ${r.p99}× |`,
    "",
    `Celery CPU per task (µs): ${
      Object.entries(celery.throughput.cpu_us_per_task).map(([k, v]) => `${k} ${v}`).join(", ")
    }`,
  ].join("\n");
}
