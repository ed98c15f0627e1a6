/**
 * A peer's server or client run in a session (so a process group) of its own, for the peer
 * benchmarks: `stop()` signals the whole group (a Celery worker's pool children included), and
 * a watcher inside the group takes it all down when this process dies in any way (it reads a
 * stdin pipe only this process holds and sees EOF), so no peer outlives a crashed benchmark.
 *
 * @module
 */
import { setTimeout as delay } from "node:timers/promises";
import { signal } from "../../tests/harness/_os.ts";
import { processGroupMembers } from "../../endpoint/pid_file.ts";

/**
 * `sh -c` wrapper. The command gets /dev/null as stdin; the watcher gets ours through fd 3
 * (background jobs of a non-interactive shell get /dev/null unless redirected). On EOF the
 * watcher removes `$PEER_REMOVE_DIR` (if set), then kills the group, itself included.
 */
const WRAPPER = `
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
{ cat >/dev/null; [ -n "$PEER_REMOVE_DIR" ] && rm -rf -- "$PEER_REMOVE_DIR"; kill -KILL 0; } <&3 &
exec 3<&-
wait "$child"
code=$?
echo "process-group: $1 exited with code $code" >&2
kill -TERM 0
`;

/** Options of {@linkcode ProcessGroup.spawn}. */
export interface ProcessGroupOptions {
  /** What the command is, for error messages ("Celery worker"). */
  name: string;
  /** File that receives the group's stderr. */
  logFile: string;
  /** Working directory. @default this process's */
  cwd?: string;
  /** Extra environment variables. @default {} */
  env?: Record<string, string>;
  /**
   * A directory the watcher removes when this process dies without stopping the group (a
   * normal `stop()` leaves it to the caller). @default undefined
   */
  removeDirIfOrphaned?: string;
}

/** Lifecycle of a {@linkcode ProcessGroup}. */
export type ProcessGroupState = "running" | "stopping" | "stopped";

/** A command running in a process group of its own until {@linkcode ProcessGroup.stop}. */
export class ProcessGroup implements AsyncDisposable {
  /** Process group id (the wrapper's pid). */
  readonly pgid: number;
  readonly #name: string;
  readonly #logFile: string;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: string[] = [];
  readonly #done: Promise<void>;
  #exited = false;
  #state: ProcessGroupState = "running";
  #stopping: Promise<void> | undefined;

  private constructor(name: string, child: Deno.ChildProcess, logFile: string) {
    this.#name = name;
    this.#child = child;
    this.pgid = child.pid;
    this.#logFile = logFile;
    this.#stdin = child.stdin.getWriter();
    const out = (async () => {
      let buf = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        const parts = buf.split("\n");
        buf = parts.pop() ?? "";
        this.#lines.push(...parts);
      }
      if (buf !== "") this.#lines.push(buf);
    })();
    const err = Deno.open(logFile, { create: true, append: true })
      .then((f) => child.stderr.pipeTo(f.writable));
    this.#done = Promise.all([child.status, out, err]).then(() => {
      this.#exited = true;
    }, () => {
      this.#exited = true;
    });
  }

  /** Starts `cmd args...` in a new session; stdout is kept as lines, stderr goes to the log. */
  static spawn(cmd: string, args: readonly string[], options: ProcessGroupOptions): ProcessGroup {
    const child = new Deno.Command("setsid", {
      args: ["sh", "-c", WRAPPER, cmd, cmd, ...args],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      env: { ...options.env, PEER_REMOVE_DIR: options.removeDirIfOrphaned ?? "" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new ProcessGroup(options.name, child, options.logFile);
  }

  /** Where the group is in its life. */
  get state(): ProcessGroupState {
    return this.#state;
  }

  /** Whether the command has exited (and its output is all read). */
  get exited(): boolean {
    return this.#exited;
  }

  /** Lines printed on stdout so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** Resolves once the command exited and its output is read. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** The last `chars` characters of the log (for error messages). */
  async logTail(chars = 3000): Promise<string> {
    const log = await Deno.readTextFile(this.#logFile).catch(() => "");
    return `--- ${this.#logFile} ---\n${log.slice(-chars)}`;
  }

  /**
   * Resolves with the first stdout line that `match` accepts; rejects with the log's tail when
   * the command exits first or `timeoutMs` passes. `what` names the line in that error.
   */
  async waitForLine(
    match: (line: string) => boolean,
    options: { timeoutMs: number; what: string },
  ): Promise<string> {
    const { timeoutMs, what } = options;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.#lines.find(match);
      if (line !== undefined) return line;
      const problem = this.#exited
        ? `exited before printing ${what}`
        : Date.now() > deadline
        ? `did not print ${what} within ${timeoutMs} ms`
        : undefined;
      if (problem !== undefined) {
        throw new Error(`The ${this.#name} ${problem}\n${await this.logTail()}`);
      }
      await delay(20);
    }
  }

  /** Live pids in the group now (zombies left out). */
  pids(): number[] {
    return processGroupMembers(this.pgid);
  }

  /**
   * SIGTERM to the group, SIGKILL to what is left after `graceMs`; resolves once the group is
   * empty. Idempotent.
   */
  stop(graceMs = 5_000): Promise<void> {
    this.#stopping ??= this.#stop(graceMs);
    return this.#stopping;
  }

  /** Same as {@linkcode stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #stop(graceMs: number): Promise<void> {
    this.#state = "stopping";
    // The watcher dies with the group (SIGTERM) before it could read EOF, so no directory goes.
    signal(-this.pgid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    while (this.pids().length > 0 && Date.now() < deadline) await delay(50);
    signal(-this.pgid, "SIGKILL");
    await this.#stdin.close().catch(() => {});
    await this.#done;
    for (let i = 0; i < 100 && this.pids().length > 0; i++) await delay(50);
    this.#state = "stopped";
  }
}
