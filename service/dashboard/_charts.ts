/**
 * The dashboard's charts, drawn on the server as inline SVG (no script, no other origin): a task
 * group's progress by state, an endpoint's online history, and a task's time in each hop.
 *
 * @module
 */
import { html } from "hono/html";
import type { Html } from "./_layout.ts";
import { duration } from "./_layout.ts";
import type { UptimeSegment } from "../store.ts";

/** The four states a group's progress is shown in. */
export const BUCKETS = ["waiting", "running", "success", "failed"] as const;

/** One of {@linkcode BUCKETS}. */
export type Bucket = typeof BUCKETS[number];

/** The bucket of a stored task status. */
export function bucketOf(status: string): Bucket {
  switch (status) {
    case "success":
      return "success";
    case "failed":
      return "failed";
    case "running":
    case "execution-start":
    case "execution-end":
      return "running";
    default:
      return "waiting";
  }
}

/** Tasks by stored status, summed into buckets. */
export function bucketCounts(counts: Record<string, number>): Record<Bucket, number> {
  const out: Record<Bucket, number> = { waiting: 0, running: 0, success: 0, failed: 0 };
  for (const [status, n] of Object.entries(counts)) out[bucketOf(status)] += n;
  return out;
}

const BAR_W = 600;
const BAR_ORDER: readonly Bucket[] = ["success", "failed", "running", "waiting"];
const COLOR: Record<Bucket, string> = {
  waiting: "#8c959f",
  running: "#0969da",
  success: "#1a7f37",
  failed: "#cf222e",
};

/** Where each bucket's part of a progress bar {@linkcode BAR_W} wide starts, and its width. */
export function barLayout(
  counts: Record<Bucket, number>,
  total: number,
): Record<Bucket, { x: number; width: number }> {
  const out = {} as Record<Bucket, { x: number; width: number }>;
  let x = 0;
  for (const b of BAR_ORDER) {
    const width = total > 0 ? Math.round((counts[b] / total) * BAR_W * 10) / 10 : 0;
    out[b] = { x, width };
    x += width;
  }
  return out;
}

/** Percent of a group's tasks that ended (success or failed), rounded down. */
export function percentDone(counts: Record<Bucket, number>, total: number): number {
  return total > 0 ? Math.floor(((counts.success + counts.failed) / total) * 100) : 0;
}

/** A progress bar of a group, its parts named by `data-bar` for live updates. */
export function progressBar(counts: Record<Bucket, number>, total: number, label: string): Html {
  const bars = barLayout(counts, total);
  return html`<svg viewBox="0 0 ${BAR_W} 18" width="${BAR_W}" height="18" role="img"
  aria-label="${label}" preserveAspectRatio="none" class="progress">
<rect x="0" y="0" width="${BAR_W}" height="18" fill="#eaeef2" rx="3"></rect>
${
    BAR_ORDER.map((b) =>
      html`
        <rect data-bar="${b}" x="${bars[b].x}" y="0" width="${bars[b].width}" height="18"
          fill="${COLOR[b]}"></rect>
      `
    )
  }
</svg>`;
}

/** The legend of the states, with live counts. */
export function bucketLegend(counts: Record<Bucket, number>): Html {
  return html`<ul class="legend">${
    BUCKETS.map((b) =>
      html`<li class="l-${b}">${b}: <strong data-count="${b}">${counts[b]}</strong></li>`
    )
  }</ul>`;
}

/**
 * An endpoint's online history from `from` to `to` (epoch seconds): online periods green over
 * offline grey, with the start, middle and end times below.
 */
export function uptimeStrip(segments: readonly UptimeSegment[], from: number, to: number): Html {
  const W = 420;
  const span = Math.max(1, to - from);
  const x = (t: number) =>
    Math.round(((Math.min(Math.max(t, from), to) - from) / span) * W * 10) / 10;
  const online = segments.filter((s) => s.until > from && s.since < to);
  const upS = online.reduce((n, s) => n + (Math.min(s.until, to) - Math.max(s.since, from)), 0);
  const label = `Online ${Math.round((upS / span) * 100)} % of the last ${
    Math.round(span / 60)
  } minutes, in ${online.length} period${online.length === 1 ? "" : "s"}`;
  const hhmm = (t: number) => new Date(t * 1000).toISOString().slice(11, 16);
  return html`
    <figure class="uptime">
      <svg viewBox="0 0 ${W} 44" width="${W}" height="44" role="img"
        aria-label="${label}">
    <rect x="0" y="0" width="${W}" height="24" fill="#d0d7de" rx="3"></rect>
    ${online.map((s) =>
      html`
        <rect x="${x(s.since)}" y="0" width="${Math.max(
          1,
          x(s.until) - x(s.since),
        )}" height="24" fill="#1a7f37">
          <title>online ${hhmm(s.since)}–${hhmm(Math.min(s.until, to))} UTC</title>
        </rect>
      `
    )}
    <text x="0" y="40">${hhmm(from)}</text>
    <text x="${W / 2}" y="40" text-anchor="middle">${hhmm(from + span / 2)}</text>
    <text x="${W}" y="40" text-anchor="end">${hhmm(to)} UTC</text>
      </svg>
      <figcaption class="muted">${label}.</figcaption>
    </figure>
  `;
}

/** One hop of a task's trip: from one recorded state to the next. */
export interface Hop {
  from: string;
  to: string;
  ms: number;
}

/**
 * A task's hops from its recorded transitions (ns timestamps as decimal strings), sorted by
 * time, with the submission (`createdAtS`) before and the stored result (`completionS`) after
 * when they fall outside the transitions.
 */
export function hopsOf(
  transitions: ReadonlyArray<{ state: string; timestamp: string }>,
  createdAtS: number,
  completionS: number | null,
): Hop[] {
  const points: Array<{ state: string; ns: bigint }> = [];
  for (const t of transitions) {
    try {
      points.push({ state: t.state, ns: BigInt(t.timestamp) });
    } catch {
      // a timestamp that is not an integer cannot be placed
    }
  }
  points.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
  const created = BigInt(Math.round(createdAtS * 1e6)) * 1000n;
  if (points.length === 0 || created < points[0]!.ns) {
    points.unshift({ state: "submitted", ns: created });
  }
  if (completionS !== null) {
    const done = BigInt(Math.round(completionS * 1e6)) * 1000n;
    if (done > points.at(-1)!.ns) points.push({ state: "result stored", ns: done });
  }
  const hops: Hop[] = [];
  for (let i = 1; i < points.length; i++) {
    hops.push({
      from: points[i - 1]!.state,
      to: points[i]!.state,
      ms: Number(points[i]!.ns - points[i - 1]!.ns) / 1e6,
    });
  }
  return hops;
}

/**
 * A bar per hop, its length the time spent and its start where the hop before it ended, with
 * the hop and its time written above it (readable when a phone scales the chart down).
 */
export function hopChart(hops: readonly Hop[]): Html {
  const total = hops.reduce((n, h) => n + h.ms, 0);
  const W = 420;
  const row = 38;
  const H = hops.length * row + 22;
  let start = 0;
  return html`
    <figure class="hops">
      <svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"
        aria-label="Time in each hop, ${duration(total)} in all">
    <rect x="0" y="0" width="${W}" height="${H - 20}" fill="#f6f8fa"></rect>
    ${hops.map((h, i) => {
      const x = total > 0 ? (start / total) * W : 0;
      const w = Math.max(2, total > 0 ? (h.ms / total) * W : 0);
      start += h.ms;
      const y = i * row;
      return html`
        <g>
          <text x="4"
            y="${y + 15}">${h.from} → ${h.to}: <tspan font-weight="600">${duration(
              h.ms,
            )}</tspan></text>
          <rect x="${Math.min(x, W - w).toFixed(1)}" y="${y + 20}" width="${w.toFixed(
            1,
          )}" height="12"
            fill="#0969da" rx="2"></rect>
        </g>
      `;
    })}
    <text x="4" y="${H - 4}">total ${duration(total)}</text>
      </svg>
      <figcaption class="muted">Each bar starts where the hop before it ended; its length is the time
    between the two recorded transitions.</figcaption>
    </figure>
  `;
}
