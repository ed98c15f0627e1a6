/**
 * What the `funcx` command prints and how it exits: sysexits-style exit codes, the error that ends
 * a command with one, the mapping from SDK errors to codes, results as JSON values, task counts
 * and the progress bar of `results --wait`. Pure logic, no network: the commands live in
 * `_funcx_commands.ts`.
 *
 * @module
 */
import { type BatchResult, FuncxAPIError, TaskExecutionFailed } from "../mod.ts";

/** Exit codes of `funcx` (sysexits.h where one fits). */
export const EXIT = {
  /** Every task succeeded (or the command did what it was asked). */
  OK: 0,
  /** The command worked, and some tasks failed. */
  TASKS_FAILED: 1,
  /** Bad usage: unknown option, bad argument, bad JSON. */
  USAGE: 64,
  /** The service refused the request (unknown endpoint, task or group, bad function). */
  DATAERR: 65,
  /** The function file cannot be read or has no such export. */
  NOINPUT: 66,
  /** The service cannot be reached, or is unavailable. */
  UNAVAILABLE: 69,
  /** A bug: an error nobody expected. */
  SOFTWARE: 70,
  /** Tasks are still pending (`results` without `--wait`, or its `--timeout` ran out). */
  TEMPFAIL: 75,
  /** Not logged in, or the credentials were refused. */
  NOPERM: 77,
} as const;

/** Ends a command with a message, a stable error code and an exit code. */
export class FuncxCliError extends Error {
  /** The exit code. */
  readonly exitCode: number;
  /** A stable name of the error, for `--json` (`usage`, `not_logged_in`, ...). */
  readonly code: string;
  /** Builds the error. */
  constructor(exitCode: number, code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FuncxCliError";
    this.exitCode = exitCode;
    this.code = code;
  }
}

/** The exit code and error code of an error that ended a command. */
export function classify(err: unknown): { exitCode: number; code: string; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof FuncxCliError) return { exitCode: err.exitCode, code: err.code, message };
  if (err instanceof Error && err.name === "NotLoggedIn") {
    return { exitCode: EXIT.NOPERM, code: "not_logged_in", message };
  }
  if (err instanceof FuncxAPIError) {
    const status = err.httpStatus;
    if (status === 0 || status === 429 || status >= 500) {
      return { exitCode: EXIT.UNAVAILABLE, code: err.codeName, message };
    }
    if (status === 401 || status === 403) {
      return { exitCode: EXIT.NOPERM, code: err.codeName, message };
    }
    return { exitCode: EXIT.DATAERR, code: err.codeName, message };
  }
  return { exitCode: EXIT.SOFTWARE, code: "internal_error", message };
}

/**
 * A result as a JSON value: `Date` becomes its ISO string, `Map` an object, `Set` and typed
 * arrays arrays, `BigInt` a decimal string, `undefined` null.
 */
export function toJsonValue(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value === "bigint") return value.toString();
  if (typeof value !== "object") return value;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Map) {
    return Object.fromEntries([...value].map(([k, v]) => [String(k), toJsonValue(v)]));
  }
  if (value instanceof Set) return [...value].map(toJsonValue);
  if (ArrayBuffer.isView(value)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>, toJsonValue);
  }
  if (Array.isArray(value)) return value.map(toJsonValue);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonValue(v)]));
}

/** How many tasks are in each state. */
export interface TaskCounts {
  /** All tasks. */
  total: number;
  /** Finished with a result. */
  succeeded: number;
  /** Finished with an error (including cancelled). */
  failed: number;
  /** On a worker now. */
  running: number;
  /** Not started: waiting for the endpoint, a node or a worker. */
  waiting: number;
}

/** Counts `results` by state. */
export function countTasks(results: Iterable<BatchResult>): TaskCounts {
  const c: TaskCounts = { total: 0, succeeded: 0, failed: 0, running: 0, waiting: 0 };
  for (const r of results) {
    c.total++;
    if (!r.pending) {
      if (r.error) c.failed++;
      else c.succeeded++;
    } else if (r.status === "running") c.running++;
    else c.waiting++;
  }
  return c;
}

/** The exit code a set of tasks gives: all succeeded, some failed, or some still pending. */
export function exitForCounts(c: TaskCounts): number {
  if (c.running + c.waiting > 0) return EXIT.TEMPFAIL;
  return c.failed > 0 ? EXIT.TASKS_FAILED : EXIT.OK;
}

/** One task in `--json` output. */
export interface TaskJson {
  /** The task's id. */
  task_id: string;
  /** Its state: `success`, `failed`, or a pending state such as `running`. */
  status: string;
  /** The result of a successful task. */
  result?: unknown;
  /** Why a failed task failed. */
  error?: { code: string; name: string; message: string; stack?: string };
  /** When it finished (ISO 8601), when known. */
  completed_at?: string;
}

/** A task's entry for `--json`. */
export function taskJson(r: BatchResult, completedAt?: number): TaskJson {
  const out: TaskJson = {
    task_id: r.taskId,
    status: r.pending ? r.status : (r.error ? "failed" : "success"),
  };
  if (!r.pending && !r.error) out.result = toJsonValue(r.result);
  if (r.error instanceof TaskExecutionFailed) {
    out.error = {
      code: r.error.errorCode,
      name: r.error.remote.name,
      message: r.error.remote.message,
      stack: r.error.remote.stack,
    };
  } else if (r.error) {
    out.error = { code: r.error.codeName, name: r.error.name, message: r.error.message };
  }
  if (completedAt !== undefined) out.completed_at = new Date(completedAt * 1000).toISOString();
  return out;
}

/** The counts in words: `3 tasks: 2 succeeded, 1 failed, 0 running, 0 waiting`. */
export function countsLine(c: TaskCounts): string {
  return `${c.total} task${c.total === 1 ? "" : "s"}: ${c.succeeded} succeeded, ${c.failed} ` +
    `failed, ${c.running} running, ${c.waiting} waiting`;
}

/**
 * One frame of the progress bar: `#` succeeded, `x` failed, `>` running, `.` waiting, then the
 * counts.
 */
export function progressBar(c: TaskCounts, width = 30): string {
  const cells = (n: number) => (c.total === 0 ? 0 : Math.round((n / c.total) * width));
  const ok = cells(c.succeeded);
  const bad = Math.min(width - ok, cells(c.failed));
  const run = Math.min(width - ok - bad, cells(c.running));
  const bar = "#".repeat(ok) + "x".repeat(bad) + ">".repeat(run);
  return `[${bar.padEnd(width, ".")}] ${c.succeeded + c.failed}/${c.total} done, ` +
    `${c.failed} failed, ${c.running} running`;
}

/** Writes progress frames on a terminal's line (stderr); does nothing when it is not a terminal. */
export class ProgressBar {
  readonly #on: boolean;
  #last = "";

  /** A bar on stderr when stderr is a terminal (`force` overrides the check). */
  constructor(force?: boolean) {
    this.#on = force ?? Deno.stderr.isTerminal();
  }

  /** Draws `c` (only when it changed). */
  update(c: TaskCounts): void {
    const line = progressBar(c);
    if (!this.#on || line === this.#last) return;
    this.#last = line;
    Deno.stderr.writeSync(new TextEncoder().encode(`\r${line}\x1b[K`));
  }

  /** Ends the bar's line. */
  done(): void {
    if (this.#on && this.#last) Deno.stderr.writeSync(new TextEncoder().encode("\n"));
  }
}
