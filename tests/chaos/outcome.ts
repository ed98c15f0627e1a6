/**
 * What the chaos suite counts: how a future settled (a value, a lost worker or manager, a
 * remote error or anything else, which is a transport problem leaking into a task), and the
 * function its tasks run, which leaves one line per run in a side-effect file.
 *
 * @module
 */
import { TaskCancelledError, TaskExecutionFailed } from "../../mod.ts";

/** How one future settled. */
export type Outcome =
  | { kind: "value"; value: unknown }
  | { kind: "lost"; code: "WorkerLost" | "ManagerLost"; message: string }
  | { kind: "remote"; name: string; message: string }
  | { kind: "cancelled"; message: string }
  | { kind: "transport"; name: string; message: string };

/** Sorts a future's rejection into an {@linkcode Outcome}. */
export function failureOutcome(err: unknown): Outcome {
  if (err instanceof TaskExecutionFailed) {
    for (const code of ["WorkerLost", "ManagerLost"] as const) {
      if (err.errorCode === code || err.remote.name === code) {
        return { kind: "lost", code, message: err.remote.message };
      }
    }
    return { kind: "remote", name: err.remote.name, message: err.remote.message };
  }
  if (err instanceof TaskCancelledError) return { kind: "cancelled", message: err.message };
  const e = err instanceof Error ? err : new Error(String(err));
  return { kind: "transport", name: e.name, message: e.message };
}

/** What two processes watching one task must agree on: its value, or how it failed. */
export function outcomeKey(o: Outcome): string {
  return o.kind === "value"
    ? `value ${JSON.stringify(o.value)}`
    : o.kind === "lost"
    ? o.code
    : o.kind;
}

/** A short text naming an outcome, for counts and problem lines. */
export function outcomeLabel(o: Outcome): string {
  switch (o.kind) {
    case "value":
      return `value ${JSON.stringify(o.value)}`;
    case "lost":
      return o.code;
    case "remote":
      return `remote ${o.name}: ${o.message.slice(0, 160)}`;
    case "cancelled":
      return `cancelled: ${o.message.slice(0, 160)}`;
    case "transport":
      return `${o.name}: ${o.message.split("\n")[0]!.slice(0, 200)}`;
  }
}

/**
 * The task every chaos run submits: appends `"<n> <worker pid> <manager pid>"` to `file`, waits
 * for `gate` to exist (when given) and `ms`, and returns `n`. It travels as source text, so it
 * uses nothing from outside itself.
 */
export async function chaosTask(
  n: number,
  file: string,
  ms: number,
  gate: string | null,
): Promise<number> {
  await Deno.writeTextFile(file, `${n} ${Deno.pid} ${Deno.ppid}\n`, { append: true });
  if (gate !== null) {
    while (!(await Deno.stat(gate).then(() => true, () => false))) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  return n;
}

/** One run of a task, as its line in the side-effect file tells. */
export interface Run {
  /** The worker's pid. */
  pid: number;
  /** The worker's parent: its manager. */
  ppid: number;
}

/** Reads the side-effect file as it grows: the runs of each task number. */
export class SideEffects {
  readonly file: string;
  readonly #runs = new Map<number, Run[]>();
  #offset = 0;
  #partial = "";
  #reading: Promise<void> = Promise.resolve();

  constructor(file: string) {
    this.file = file;
  }

  /**
   * Reads what was appended since the last call. Calls take turns: two reads from one offset at
   * once would count the same lines twice and skip the ones after them.
   */
  refresh(): Promise<void> {
    const next = this.#reading.then(() => this.#read());
    this.#reading = next.catch(() => {});
    return next;
  }

  async #read(): Promise<void> {
    using f = await Deno.open(this.file, { read: true });
    await f.seek(this.#offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(1 << 16);
    const decoder = new TextDecoder();
    for (let n; (n = await f.read(buf)) !== null;) {
      this.#offset += n;
      this.#partial += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    const lines = this.#partial.split("\n");
    this.#partial = lines.pop()!;
    for (const line of lines) {
      const [n, pid, ppid] = line.split(" ").map(Number);
      if (n === undefined || pid === undefined || ppid === undefined) continue;
      const runs = this.#runs.get(n) ?? [];
      runs.push({ pid, ppid });
      this.#runs.set(n, runs);
    }
  }

  /** The runs of task `n` seen so far. */
  runs(n: number): readonly Run[] {
    return this.#runs.get(n) ?? [];
  }

  /** Every run seen so far. */
  get total(): number {
    let t = 0;
    for (const r of this.#runs.values()) t += r.length;
    return t;
  }
}
