/**
 * A task for tests that need to know a task ran, how often, and to hold it running: it appends
 * its number to a side-effect file, then waits until a gate file exists. It is self-contained
 * (no outside names), so it can be registered as a function and run on a real endpoint.
 *
 * @module
 */

/** Appends `n` to `file`, waits until `gate` exists (`null`: no wait), and returns `n`. */
export async function gatedSideEffect(
  n: number,
  file: string,
  gate: string | null,
): Promise<number> {
  await Deno.writeTextFile(file, `${n}\n`, { append: true });
  while (gate !== null && !(await Deno.stat(gate).then(() => true, () => false))) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return n;
}

/** The numbers written to a side-effect file so far, one per run, sorted as text. */
export async function sideEffectRuns(file: string): Promise<string[]> {
  return (await Deno.readTextFile(file)).split("\n").filter((l) => l !== "").sort();
}
