/**
 * What the private batch-system harnesses (Slurm, Grid Engine) share: installing the scheduler,
 * starting its daemons under a shell supervisor in a session of their own (with the process-tree
 * watcher of `_os.ts`), waiting until the scheduler answers, retrying a start that lost a port,
 * and stopping: jobs first, then the daemons, then whatever is left, then the directory.
 *
 * @module
 */
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import {
  aptInstall,
  descendantsOf,
  markedPids,
  missingPrograms,
  PortTaken,
  signal,
  TREE_WATCHER,
} from "./_os.ts";

const READY_TIMEOUT_MS = 60_000;
const START_ATTEMPTS = 3;

/** A scheduler's Debian packages and the programs they bring. */
export interface SchedulerPackages {
  /** The scheduler's name in messages (`Slurm`). */
  name: string;
  /** The Debian packages. */
  packages: readonly string[];
  /** The programs that must be found. */
  programs: readonly string[];
  /** Folders searched besides `PATH` (named in the error when set). @default [] */
  dirs?: readonly string[];
}

/**
 * Ensures the scheduler's programs are installed. As root, installs the Debian packages with
 * apt-get (progress on stderr); otherwise throws an error that says what to install.
 */
export async function ensureInstalled(s: SchedulerPackages): Promise<void> {
  const dirs = s.dirs ?? [];
  const missing = await missingPrograms(s.programs, dirs);
  if (missing.length === 0) return;
  const packages = s.packages.join(" ");
  if (Deno.uid() !== 0) {
    const what = dirs.length > 0
      ? `${s.name} in "${dirs.join('", "')}": install it`
      : `${missing.map((p) => `"${p}"`).join(", ")}: install them`;
    throw new Error(`Cannot find ${what} with "sudo apt-get install ${packages}"`);
  }
  console.error(`${s.name} is not installed; installing ${packages} with apt-get`);
  await aptInstall(s.packages);
  const still = await missingPrograms(s.programs, dirs);
  if (still.length > 0) {
    throw new Error(`Cannot find "${still.join('", "')}" after installing ${packages}`);
  }
}

/**
 * Launches a cell and waits until it is ready; a launch that found one of its ports taken is
 * stopped and tried again (3 attempts), any other failure stops it and is thrown.
 */
export async function startRetrying<T extends { waitReady(): Promise<void>; stop(): unknown }>(
  launch: () => Promise<T>,
): Promise<T> {
  for (let attempt = 1;; attempt++) {
    const cell = await launch();
    try {
      await cell.waitReady();
      return cell;
    } catch (err) {
      await cell.stop();
      if (attempt < START_ATTEMPTS && err instanceof PortTaken) continue;
      throw err;
    }
  }
}

/** What {@linkcode Supervisor.spawn} starts. */
export interface SupervisorOptions {
  /**
   * Shell lines (`bash`) that start the daemons in the background under the supervisor, with
   * `$D` the directory and `$MARK` the marker in their environment (`env "$MARK" daemon &`).
   */
  daemons: string;
  /** The scheduler's name in the supervisor's log (`Slurm`). */
  name: string;
  /** The supervisor's `$0` (`funcx-slurm:<id>`). */
  label: string;
  /** The cell's temporary directory, removed at the end. */
  dir: string;
  /** `NAME=value` in the environment of every daemon, to find them wherever they moved. */
  marker: string;
  /** More environment of the supervisor and daemons. */
  env: Record<string, string>;
}

/** What {@linkcode Supervisor.waitReady} polls. */
export interface ReadyCheck {
  /** The cell in messages (`Slurm cluster "funcx1234"`). */
  name: string;
  /** The client command polled, in the timeout message (`sinfo`). */
  probeName: string;
  /** What in the logs means a port was taken. */
  portTaken: RegExp;
  /** The log files (relative to the directory) shown in errors. */
  logFiles: () => Promise<string[]>;
  /** Asks the scheduler once: whether it is ready, and its answer. */
  probe: () => Promise<{ ready: boolean; said: string }>;
}

/**
 * The daemons of a cell under a `bash` supervisor in a session of its own, whose fd 3 is a pipe
 * only this process holds: when this process dies in any way, the watcher takes the daemons,
 * their jobs and the directory down.
 */
export class Supervisor {
  /** The cell's temporary directory. */
  readonly dir: string;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #marker: string;
  readonly #started = performance.now();
  #exit: Deno.CommandStatus | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(dir: string, marker: string, child: Deno.ChildProcess) {
    this.dir = dir;
    this.#marker = marker;
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    void child.status.then((s) => this.#exit = s);
    child.unref();
  }

  /** Starts the supervisor; it ends the group when one of the daemons exits. */
  static spawn(o: SupervisorOptions): Supervisor {
    const script = [
      `exec >>"$D/supervisor.log" 2>&1 3<&0`,
      TREE_WATCHER,
      "exec 3<&-",
      o.daemons.trim(),
      "wait -n",
      `echo "a ${o.name} daemon exited with code $?"`,
      `trap "" TERM`,
      "kill -TERM 0",
      "wait",
      "",
    ].join("\n");
    const child = new Deno.Command("setsid", {
      args: ["bash", "-c", script, o.label],
      cwd: o.dir,
      env: {
        PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${Deno.env.get("PATH") ?? ""}`,
        LANG: "C.UTF-8",
        D: o.dir,
        MARK: o.marker,
        ...o.env,
      },
      clearEnv: true,
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    return new Supervisor(o.dir, o.marker, child);
  }

  /**
   * Polls `check.probe` until it says ready and returns the milliseconds since the spawn; throws
   * {@linkcode PortTaken} when the logs say a port was taken, and an error with the logs when
   * the supervisor ended or 60 s passed.
   */
  async waitReady(check: ReadyCheck): Promise<number> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = "";
    for (;;) {
      const logs = await tailLogs(this.dir, await check.logFiles());
      const taken = check.portTaken.test(logs);
      const problem = taken
        ? "found one of its ports taken"
        : this.#exit !== undefined
        ? "stopped before it was ready"
        : Date.now() > deadline
        ? `was not ready after ${READY_TIMEOUT_MS} ms (last ${check.probeName}: ${last})`
        : undefined;
      if (problem !== undefined) {
        const message = `${check.name} ${problem}; logs:\n${logs}`;
        throw new (taken ? PortTaken : Error)(message);
      }
      const { ready, said } = await check.probe();
      last = said;
      if (ready) return Math.round(performance.now() - this.#started);
      await delay(100);
    }
  }

  /**
   * Runs `cancelJobs` while the daemons run, kills the job processes, stops the daemons, kills
   * what is left and removes the directory. Idempotent.
   */
  stop(cancelJobs: () => Promise<unknown>): Promise<void> {
    this.#stopping ??= this.#stop(cancelJobs);
    return this.#stopping;
  }

  async #stop(cancelJobs: () => Promise<unknown>): Promise<void> {
    this.#child.ref();
    // Jobs first, so the scheduler ends their processes the normal way.
    if (this.#exit === undefined) await cancelJobs().catch(() => {});
    // Job processes first (SIGKILL), then the daemons (SIGTERM) so that the supervisor reaps
    // them, then whatever is left.
    const sweep = async (jobsOnly: boolean) => {
      for (let i = 0; i < 3; i++) {
        const marked = await markedPids(this.#marker);
        const skip = new Set(jobsOnly ? marked : []);
        const pids = descendantsOf(marked).filter((p) => !skip.has(p));
        for (const pid of pids) signal(pid, "SIGKILL");
        if (pids.length === 0) return;
        await delay(100);
      }
    };
    await sweep(true);
    for (const pid of await markedPids(this.#marker)) signal(pid, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#child.status, new Promise((r) => timer = setTimeout(r, 5_000))]);
    clearTimeout(timer);
    await sweep(false);
    await this.#stdin.close().catch(() => {});
    await this.#child.status;
    for (let i = 0; i < 50 && (await markedPids(this.#marker)).length > 0; i++) await delay(100);
    await Deno.remove(this.dir, { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }
}

/** The last 15 lines of each of `files` (relative to `dir`) that exists and is not empty. */
async function tailLogs(dir: string, files: readonly string[]): Promise<string> {
  const parts: string[] = [];
  for (const f of files) {
    const text = await Deno.readTextFile(join(dir, f)).catch(() => "");
    if (text) parts.push(`--- ${f}\n${text.trimEnd().split("\n").slice(-15).join("\n")}`);
  }
  return parts.join("\n");
}

/** Runs a client command with no input and its output discarded; throws if it cannot start. */
export async function quietly(
  cmd: string,
  args: string[],
  env: Record<string, string>,
): Promise<void> {
  await new Deno.Command(cmd, { args, env, stdin: "null", stdout: "null", stderr: "null" })
    .output();
}

/**
 * Runs a client command once: whether it succeeded, and its stdout (stderr when it failed; empty
 * when it could not start).
 */
export async function ask(
  cmd: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ ok: boolean; text: string }> {
  const out = await new Deno.Command(cmd, { args, env, stdin: "null" }).output()
    .catch(() => undefined);
  if (out === undefined) return { ok: false, text: "" };
  return { ok: out.success, text: new TextDecoder().decode(out.success ? out.stdout : out.stderr) };
}
