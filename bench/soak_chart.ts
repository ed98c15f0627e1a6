/**
 * The soak's chart: resident memory of each process, and the broker's memory, over the run, as
 * a self-contained SVG (no fonts or scripts fetched), with the warm-up shaded.
 *
 * @module
 */
import type { SoakReport } from "./soak.ts";

const W = 760;
const H = 360;
const PAD = { left: 56, right: 150, top: 30, bottom: 40 };
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/**
 * Draws `report`'s memory samples.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { soakChart } from "./soak_chart.ts";
 * const svg = soakChart({
 *   minutes: 1, warmupS: 20,
 *   samples: [
 *     { t: 0, rssMiB: { service: 50 }, brokerMemMiB: 100 },
 *     { t: 60, rssMiB: { service: 52 }, brokerMemMiB: 101 },
 *   ],
 * });
 * assert.match(svg, /^<svg/);
 * assert.match(svg, /service/);
 * ```
 */
export function soakChart(
  report: Pick<SoakReport, "minutes" | "warmupS"> & {
    samples: Array<{ t: number; rssMiB: Record<string, number>; brokerMemMiB: number }>;
  },
): string {
  const samples = report.samples;
  const series = new Map<string, Array<[number, number]>>();
  for (const s of samples) {
    for (const [role, v] of Object.entries(s.rssMiB)) {
      series.set(role, [...(series.get(role) ?? []), [s.t, v]]);
    }
    // The broker's own count of its memory; 0 until its first statistics are in.
    if (s.brokerMemMiB > 0) {
      series.set("broker (mem_used)", [
        ...(series.get("broker (mem_used)") ?? []),
        [s.t, s.brokerMemMiB],
      ]);
    }
  }
  const maxT = Math.max(report.minutes * 60, ...samples.map((s) => s.t), 1);
  const maxY = Math.max(10, ...[...series.values()].flat().map(([, v]) => v)) * 1.1;
  const x = (t: number) => PAD.left + (t / maxT) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / maxY) * (H - PAD.top - PAD.bottom);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
      `font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<rect x="${x(0)}" y="${PAD.top}" width="${x(report.warmupS) - x(0)}" ` +
      `height="${H - PAD.top - PAD.bottom}" fill="#eee"/>`,
    `<text x="${x(0) + 4}" y="${PAD.top + 12}" fill="#777">warm-up</text>`,
    `<text x="${PAD.left}" y="18" font-size="13">Soak, ${report.minutes} min: ` +
      `resident memory (MiB) over time</text>`,
  );
  for (let i = 0; i <= 5; i++) {
    const v = (maxY / 5) * i;
    parts.push(
      `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${PAD.left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`,
    );
  }
  for (let i = 0; i <= 6; i++) {
    const t = (maxT / 6) * i;
    parts.push(
      `<text x="${x(t)}" y="${H - PAD.bottom + 16}" text-anchor="middle">` +
        `${(t / 60).toFixed(t < 600 ? 1 : 0)} min</text>`,
    );
  }
  [...series].forEach(([role, points], i) => {
    const color = COLORS[i % COLORS.length]!;
    const d = points.map(([t, v], k) =>
      `${k === 0 ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`
    )
      .join(" ");
    parts.push(
      `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`,
      `<rect x="${W - PAD.right + 12}" y="${
        PAD.top + i * 18
      }" width="10" height="10" fill="${color}"/>`,
      `<text x="${W - PAD.right + 28}" y="${PAD.top + i * 18 + 9}">${escape(role)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function escape(s: string): string {
  return s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
