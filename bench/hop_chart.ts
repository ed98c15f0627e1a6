/**
 * The round trip of one task, broken down by hop, as an SVG bar: each segment is the median time
 * from one recorded state to the next (submit → endpoint received → … → result in hand), with an
 * optional mark for a peer's median round trip (Celery's, from `--peers`). Written by
 * `bench/roundtrip.ts` next to its JSON; the README shows a copy.
 *
 * @module
 */

/** What the chart shows. */
export interface HopChartInput {
  /** Median ms from the submit call to each state, in the order they happen. */
  hops: Record<string, number>;
  /** A caption under the bar. */
  caption: string;
  /** A peer's median round trip to mark, if any. */
  peer?: { name: string; p50Ms: number };
}

const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"];

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * The SVG text of the chart.
 *
 * @example
 * ```ts
 * import { hopChartSvg } from "./hop_chart.ts";
 * const svg = hopChartSvg({ hops: { received: 1, running: 1.5, "result in hand": 3 }, caption: "x" });
 * if (!svg.startsWith("<svg") || !svg.includes("received")) throw new Error("no chart");
 * ```
 */
export function hopChartSvg(input: HopChartInput): string {
  // Segments: from the previous point (submit = 0) to each state, in time order.
  const points = Object.entries(input.hops).sort((a, b) => a[1] - b[1]);
  const segments: Array<{ label: string; from: number; to: number }> = [];
  let from = 0;
  let start = "submit";
  for (const [state, at] of points) {
    const last = segments[segments.length - 1];
    if (last && at - from < 0.05) {
      // A hop too short to see joins the one before it.
      last.label = `${last.label.split(" → ")[0]} → ${state}`;
      last.to = at;
    } else {
      segments.push({ label: `${start} → ${state}`, from, to: at });
    }
    from = at;
    start = state;
  }
  const total = Math.max(from, input.peer?.p50Ms ?? 0);
  const width = 900;
  const left = 20;
  const barWidth = width - 2 * left;
  const scale = barWidth / (total || 1);
  const barY = 40;
  const barH = 36;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      130 + segments.length * 18
    }" font-family="sans-serif" font-size="12">`,
  );
  out.push(
    `<text x="${left}" y="22" font-size="14" font-weight="bold">One task's round trip, median ms ` +
      `from submit (total ${from.toFixed(2)} ms)</text>`,
  );
  segments.forEach((s, i) => {
    const x = left + s.from * scale;
    const w = Math.max(1, (s.to - s.from) * scale);
    out.push(
      `<rect x="${x.toFixed(1)}" y="${barY}" width="${w.toFixed(1)}" height="${barH}" fill="${
        COLORS[i % COLORS.length]
      }"><title>${escapeXml(s.label)}: ${(s.to - s.from).toFixed(2)} ms</title></rect>`,
    );
  });
  if (input.peer) {
    const x = left + input.peer.p50Ms * scale;
    out.push(
      `<line x1="${x.toFixed(1)}" y1="${barY - 6}" x2="${x.toFixed(1)}" y2="${
        barY + barH + 6
      }" stroke="#000" stroke-width="2" stroke-dasharray="4 3"/>`,
      `<text x="${(x + 4).toFixed(1)}" y="${barY - 8}">${escapeXml(input.peer.name)} p50 ${
        input.peer.p50Ms.toFixed(2)
      } ms</text>`,
    );
  }
  segments.forEach((s, i) => {
    const y = barY + barH + 24 + i * 18;
    out.push(
      `<rect x="${left}" y="${y - 10}" width="12" height="12" fill="${
        COLORS[i % COLORS.length]
      }"/>`,
      `<text x="${left + 18}" y="${y}">${escapeXml(s.label)}: ${
        (s.to - s.from).toFixed(2)
      } ms</text>`,
    );
  });
  out.push(
    `<text x="${left}" y="${barY + barH + 34 + segments.length * 18}" fill="#555">${
      escapeXml(input.caption)
    }</text>`,
  );
  out.push("</svg>");
  return out.join("\n") + "\n";
}
