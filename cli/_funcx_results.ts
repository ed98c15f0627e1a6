/**
 * The `funcx` commands that act on tasks already submitted: a task group's results and status,
 * and cancelling tasks; and the polling and printing of results that `run` shares with them.
 *
 * @module
 */
import {
  type BatchResult,
  FuncxAPIError,
  type FuncXClient,
  type ShellResult,
  TaskExecutionFailed,
} from "../mod.ts";
import {
  countsLine,
  countTasks,
  EXIT,
  exitForCounts,
  FuncxCliError,
  ProgressBar,
  type TaskCounts,
  type TaskJson,
  taskJson,
  toJsonValue,
} from "./_funcx_output.ts";
import { client, type GlobalOptions, print, taskGroupId } from "./_funcx_session.ts";
import { table } from "./_table.ts";

/** Options of {@linkcode collect}. */
export interface CollectOptions {
  /** Wait until every task has finished. */
  wait: boolean;
  /** Stop waiting after this many seconds. */
  timeoutS?: number;
  /** Called with the counts after each poll. */
  onProgress?: (c: TaskCounts) => void;
}

/** The outcomes of `taskIds`, polled until all have finished (with `wait`). */
export async function collect(
  c: FuncXClient,
  taskIds: readonly string[],
  options: CollectOptions,
): Promise<Map<string, BatchResult>> {
  const all = new Map<string, BatchResult>();
  const deadline = options.timeoutS === undefined ? Infinity : Date.now() + options.timeoutS * 1000;
  let pending = [...taskIds];
  let delay = 100;
  for (;;) {
    const got = await c.getBatchResult(pending);
    for (const [id, r] of got) all.set(id, r);
    pending = pending.filter((id) => all.get(id)?.pending ?? true);
    options.onProgress?.(countTasks(taskIds.map((id) => all.get(id)!)));
    if (!options.wait || pending.length === 0 || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, deadline - Date.now()))));
    delay = Math.min(delay * 1.5, 2000);
  }
  return new Map(taskIds.map((id) => [id, all.get(id)!]));
}

/** When each finished task of `results` finished (seconds since the epoch). */
async function completionTimes(
  c: FuncXClient,
  results: readonly BatchResult[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const todo = results.filter((r) => !r.pending);
  // A failure carries its time; a success's is read from the task (8 requests at a time).
  for (const r of todo) {
    if (r.error instanceof TaskExecutionFailed && r.error.completionT !== undefined) {
      out.set(r.taskId, r.error.completionT);
    }
  }
  const ask = todo.filter((r) => !out.has(r.taskId));
  for (let i = 0; i < ask.length; i += 8) {
    await Promise.all(
      ask.slice(i, i + 8).map(async (r) => {
        const t = await c.getTask(r.taskId);
        if (t.completion_t !== undefined) out.set(r.taskId, t.completion_t);
      }),
    );
  }
  return out;
}

/** Parses `--since`: ISO 8601 or seconds since the epoch; returns seconds since the epoch. */
export function parseSince(text: string): number {
  const n = Number(text);
  if (text.trim() !== "" && Number.isFinite(n)) return n;
  const t = Date.parse(text);
  if (Number.isNaN(t)) {
    throw new FuncxCliError(
      EXIT.USAGE,
      "usage",
      `Invalid --since "${text}": give a time such as 2026-01-31T06:00:00Z or seconds since 1970`,
    );
  }
  return t / 1000;
}

/** Prints a group's results (text or JSON) and returns the exit code of their counts. */
export async function report(
  c: FuncXClient,
  g: GlobalOptions,
  group: string,
  results: BatchResult[],
  since: number | undefined,
): Promise<number> {
  const counts = countTasks(results);
  const times = since === undefined ? undefined : await completionTimes(c, results);
  const shown = results.filter((r) =>
    !r.pending && (times === undefined || (times.get(r.taskId) ?? Infinity) >= since!)
  );
  if (g.json) {
    const tasks: TaskJson[] = shown.map((r) => taskJson(r, times?.get(r.taskId)));
    print({
      task_group_id: group,
      counts,
      complete: counts.running + counts.waiting === 0,
      results: tasks,
    });
  } else {
    for (const r of shown) printResult(r, shown.length === 1);
    console.error(countsLine(counts));
  }
  return exitForCounts(counts);
}

/** One finished task for people: the value alone for a single task, else a line per task. */
function printResult(r: BatchResult, alone: boolean): void {
  if (r.error) {
    const e = r.error instanceof TaskExecutionFailed
      ? `${r.error.remote.name}: ${r.error.remote.message}`
      : r.error.message;
    console.error(alone ? e : `${r.taskId}  failed  ${e}`);
    if (alone && r.error instanceof TaskExecutionFailed && r.error.remote.stack) {
      console.error(r.error.remote.stack.split("\n").slice(1).join("\n"));
    }
    return;
  }
  const v = r.result;
  const shell = v && typeof v === "object" && "returncode" in v && "stdout" in v
    ? v as ShellResult
    : undefined;
  if (alone && shell) {
    Deno.stdout.writeSync(new TextEncoder().encode(shell.stdout));
    if (shell.stderr) Deno.stderr.writeSync(new TextEncoder().encode(shell.stderr));
    return;
  }
  const text = typeof v === "string" && alone ? v : JSON.stringify(toJsonValue(v));
  console.log(alone ? text : `${r.taskId}  success  ${text}`);
}

/** `results GROUP [--wait] [--since T] [--timeout S]`. */
export async function resultsCommand(
  g: GlobalOptions,
  group: string,
  o: { wait: boolean; since?: string; timeoutS?: number },
): Promise<number> {
  const since = o.since === undefined ? undefined : parseSince(o.since);
  const c = await client(g);
  const id = await taskGroupId(c, group);
  const ids = await c.getTaskGroup(id);
  const bar = o.wait ? new ProgressBar() : undefined;
  const got = await collect(c, ids, {
    wait: o.wait,
    ...(o.timeoutS === undefined ? {} : { timeoutS: o.timeoutS }),
    ...(bar ? { onProgress: (n: TaskCounts) => bar.update(n) } : {}),
  });
  bar?.done();
  return await report(c, g, id, [...got.values()], since);
}

/** `status GROUP`: each task's state and the counts. */
export async function statusCommand(g: GlobalOptions, group: string): Promise<number> {
  const c = await client(g);
  const id = await taskGroupId(c, group);
  const ids = await c.getTaskGroup(id);
  const got = [...(await collect(c, ids, { wait: false })).values()];
  const counts = countTasks(got);
  const tasks = got.map((r) => ({
    task_id: r.taskId,
    status: r.pending ? r.status : (r.error ? "failed" : "success"),
  }));
  if (g.json) print({ task_group_id: id, counts, tasks });
  else {
    console.log(`Task group ${id}: ${countsLine(counts)}`);
    if (tasks.length) {
      console.log(table(["Task ID", "Status"], tasks.map((t) => [t.task_id, t.status])));
    }
  }
  return exitForCounts(counts);
}

/** `cancel ID...`. */
export async function cancelCommand(g: GlobalOptions, ids: string[]): Promise<number> {
  const c = await client(g);
  const out: Array<{ task_id: string; cancelled: boolean; error?: string }> = [];
  for (const id of ids) {
    try {
      out.push({ task_id: id, cancelled: await c.cancelTask(id) });
    } catch (err) {
      if (!(err instanceof FuncxAPIError) || err.httpStatus !== 404) throw err;
      out.push({ task_id: id, cancelled: false, error: err.codeName });
    }
  }
  if (g.json) print({ tasks: out });
  else {
    for (const t of out) {
      console.log(
        `${t.task_id}  ${t.cancelled ? "cancelled" : t.error ? "not found" : "already finished"}`,
      );
    }
  }
  return out.some((t) => t.error) ? EXIT.DATAERR : EXIT.OK;
}
