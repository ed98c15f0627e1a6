/**
 * The dashboard's live chart of this service's throughput and latency, read from its metrics
 * (`service/metrics.ts`, the registry `/metrics` serves): results stored and tasks submitted per
 * second, and the mean and 95th percentile of the round trip (submit to result stored). The
 * counters are sampled when a page with the chart is rendered, at most once a second, and the
 * last {@linkcode KEEP} samples are kept; the page refreshes itself, so the chart moves while it
 * is open and costs nothing while nobody looks. The numbers are the whole service's (every
 * user's tasks), as Prometheus sees them.
 *
 * @module
 */
import { html } from "hono/html";
import type { HistogramSnapshot } from "../../sdk/_metrics.ts";
import { type ServiceMetrics, serviceMetrics } from "../metrics.ts";
import { duration, type Html } from "./_layout.ts";

/** Samples kept (about five minutes at the overview's refresh). */
export const KEEP = 120;

/** Counters at one moment. */
export interface Sample {
  /** Epoch ms. */
  t: number;
  submitted: number;
  results: number;
  roundTrip: HistogramSnapshot;
}

/** One interval between two samples. */
export interface LivePoint {
  /** End of the interval, epoch ms. */
  t: number;
  submitsPerS: number;
  resultsPerS: number;
  /** Mean round trip of the results of the interval, ms; null when there were none. */
  meanMs: number | null;
  /** Its 95th percentile, ms (linear within a bucket, as Prometheus does); null when none. */
  p95Ms: number | null;
}

const samples: Sample[] = [];

/** Takes a sample of `m` now (unless the last is under a second old); the samples kept. */
export function sample(m: ServiceMetrics = serviceMetrics, now = Date.now()): readonly Sample[] {
  const last = samples.at(-1);
  if (!last || now - last.t >= 1000) {
    samples.push({
      t: now,
      submitted: m.tasksSubmitted.value(),
      results: m.results.value({ outcome: "success" }) + m.results.value({ outcome: "failed" }),
      roundTrip: m.roundTrip.snapshot(),
    });
    if (samples.length > KEEP) samples.splice(0, samples.length - KEEP);
  }
  return samples;
}

/** The `q` quantile of the observations counted in `counts` (not cumulative) over `bounds`. */
export function quantile(bounds: readonly number[], counts: readonly number[], q: number): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return NaN;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (seen + n >= rank && n > 0) {
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      // The +Inf bucket has no upper bound: its lower one is the best answer.
      if (i >= bounds.length) return lo;
      return lo + (bounds[i]! - lo) * ((rank - seen) / n);
    }
    seen += n;
  }
  return bounds.at(-1) ?? NaN;
}

/** The intervals between consecutive samples. */
export function livePoints(list: readonly Sample[]): LivePoint[] {
  const out: LivePoint[] = [];
  for (let i = 1; i < list.length; i++) {
    const a = list[i - 1]!;
    const b = list[i]!;
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) continue;
    const n = b.roundTrip.count - a.roundTrip.count;
    const counts = b.roundTrip.counts.map((c, j) => c - (a.roundTrip.counts[j] ?? 0));
    out.push({
      t: b.t,
      submitsPerS: (b.submitted - a.submitted) / dt,
      resultsPerS: (b.results - a.results) / dt,
      meanMs: n > 0 ? ((b.roundTrip.sum - a.roundTrip.sum) / n) * 1000 : null,
      p95Ms: n > 0 ? quantile(b.roundTrip.buckets, counts, 0.95) * 1000 : null,
    });
  }
  return out;
}

const W = 560;
const H = 120;

/** A line chart of `series` over the time span of `points`; a gap where a value is null. */
function lines(
  points: readonly LivePoint[],
  series: ReadonlyArray<{ key: string; color: string; value: (p: LivePoint) => number | null }>,
  label: string,
  unit: (v: number) => string,
): Html {
  const t0 = points[0]?.t ?? 0;
  const t1 = points.at(-1)?.t ?? 1;
  const max = Math.max(
    1e-9,
    ...points.flatMap((p) => series.map((s) => s.value(p) ?? 0)),
  );
  const x = (t: number) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * W : W).toFixed(1);
  const y = (v: number) => (H - (v / max) * (H - 10)).toFixed(1);
  return html`
    <svg viewBox="0 0 ${W} ${H + 16}" width="${W}" height="${H + 16}" role="img"
      aria-label="${label}">
      <rect x="0" y="0" width="${W}" height="${H}" fill="#f6f8fa"></rect>
      ${series.map((s) =>
        html`
          <polyline data-series="${s.key}" fill="none" stroke="${s.color}" stroke-width="2"
            points="${points.filter((p) => s.value(p) !== null).map((p) =>
              `${x(p.t)},${y(s.value(p)!)}`
            ).join(
              " ",
            )}"></polyline>
          ${points.filter((p) => s.value(p) !== null).map((p) =>
            html`<circle cx="${x(p.t)}" cy="${y(s.value(p)!)}" r="2.5" fill="${s.color}"></circle>`
          )}
        `
      )}
      <text x="4" y="12">${unit(max)}</text>
      <text x="0" y="${H + 13}">${new Date(t0).toISOString().slice(11, 19)}</text>
      <text x="${W}" y="${H + 13}" text-anchor="end">${new Date(t1).toISOString().slice(
        11,
        19,
      )} UTC</text>
    </svg>
  `;
}

/** The chart section: current figures, then throughput and latency over the samples kept. */
export function liveChart(list: readonly Sample[]): Html {
  const points = livePoints(list);
  const now = points.at(-1);
  const last = list.at(-1);
  const rate = (v: number) => `${v < 10 ? v.toFixed(1) : Math.round(v)}/s`;
  const ms = (v: number | null | undefined) => (v === null || v === undefined ? "—" : duration(v));
  return html`
    <section class="live" aria-labelledby="live-h">
      <h2 id="live-h">Throughput and latency (this service, all users)</h2>
      <p>
        <strong data-live="results-per-s">${now ? rate(now.resultsPerS) : "—"}</strong> results,
        <strong data-live="submits-per-s">${now ? rate(now.submitsPerS) : "—"}</strong> submits;
        round trip mean <strong data-live="mean">${ms(now?.meanMs)}</strong>, p95
        <strong data-live="p95">${ms(now?.p95Ms)}</strong>;
        <span data-live="results-total">${last?.results ?? 0}</span> results since the service
        started.
      </p>
      ${points.length < 2
        ? html`<p class="muted">Collecting: the chart fills in while this page is open.</p>`
        : html`
          <div class="cards">
            <figure>
              ${lines(
                points,
                [
                  { key: "results", color: "#1a7f37", value: (p) => p.resultsPerS },
                  { key: "submits", color: "#0969da", value: (p) => p.submitsPerS },
                ],
                "Results and submits per second",
                rate,
              )}
              <figcaption><ul class="legend"><li class="l-success">results/s</li>
              <li class="l-running">submits/s</li></ul></figcaption>
            </figure>
            <figure>
              ${lines(
                points,
                [
                  { key: "mean", color: "#0969da", value: (p) => p.meanMs },
                  { key: "p95", color: "#cf222e", value: (p) => p.p95Ms },
                ],
                "Round trip, mean and 95th percentile",
                (v) => duration(v),
              )}
              <figcaption><ul class="legend"><li class="l-running">mean</li>
              <li class="l-failed">p95</li></ul></figcaption>
            </figure>
          </div>
        `}
    </section>
  `;
}
