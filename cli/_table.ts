/**
 * The text table the CLIs print for people (as funcX's texttable); scripts use `--json`.
 *
 * @module
 */

/** Renders rows as a bordered text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (ch: string) => "+" + widths.map((w) => ch.repeat(w + 2)).join("+") + "+";
  const row = (cells: string[]) =>
    "| " + cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ") + " |";
  return [line("-"), row(header), line("="), ...rows.flatMap((r) => [row(r), line("-")])].join(
    "\n",
  );
}
