/**
 * Detaching the endpoint: `start` re-runs the CLI as a hidden `__daemon` command under `setsid`
 * (a new session and process group, away from the terminal), with stdout and stderr appended to
 * `endpoint.log` and the registration passed on stdin (so broker credentials never appear on a
 * command line or in the environment). `start` returns once the daemon prints its
 * `{"event":"started"}` line into the log, or fails with the daemon's exit code and log tail.
 *
 * @module
 */
import type { EndpointRegistration } from "../sdk/client.ts";

/** The daemon exited before it was ready. */
export class DaemonFailed extends Error {
  /** The daemon's exit code. */
  readonly exitCode: number;
  /** Builds the error. */
  constructor(exitCode: number, message: string) {
    super(message);
    this.name = "DaemonFailed";
    this.exitCode = exitCode;
  }
}

/** Options of {@linkcode spawnDaemon}. */
export interface SpawnDaemonOptions {
  /** The endpoint's directory (the daemon's working directory). */
  endpointDir: string;
  /** The log file that receives stdout and stderr. */
  logFile: string;
  /** The daemon's command line. */
  command: readonly string[];
  /** What registration returned; sent on stdin. */
  registration: EndpointRegistration;
  /** Seconds to wait for the ready line. @default 120 */
  readyTimeoutS?: number;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

async function readFrom(path: string, offset: number): Promise<string> {
  try {
    const f = await Deno.open(path, { read: true });
    try {
      await f.seek(offset, Deno.SeekMode.Start);
      return await new Response(f.readable).text();
    } catch (err) {
      f.close();
      throw err;
    }
  } catch {
    return "";
  }
}

/** Starts the daemon; resolves with its pid and ready event once it is consuming tasks. */
export async function spawnDaemon(
  options: SpawnDaemonOptions,
): Promise<{ pid: number; ready: Record<string, unknown> }> {
  const offset = await fileSize(options.logFile);
  const child = new Deno.Command("setsid", {
    args: ["sh", "-c", 'exec "$@" >>"$0" 2>&1', options.logFile, ...options.command],
    cwd: options.endpointDir,
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(options.registration)));
  await writer.close();
  child.unref();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => (exited = s));
  const deadline = Date.now() + (options.readyTimeoutS ?? 120) * 1000;
  for (;;) {
    const text = await readFrom(options.logFile, offset);
    for (const line of text.split("\n")) {
      if (!line.startsWith('{"event":"started"')) continue;
      try {
        return { pid: child.pid, ready: JSON.parse(line) };
      } catch {
        // A line still being written.
      }
    }
    if (exited) {
      const tail = text.trim().split("\n").slice(-15).join("\n");
      throw new DaemonFailed(
        exited.code,
        `The endpoint daemon exited with code ${exited.code} before it was ready` +
          (tail ? `; its log "${options.logFile}" ends with:\n${tail}` : ""),
      );
    }
    if (Date.now() > deadline) {
      throw new DaemonFailed(
        1,
        `The endpoint daemon (pid ${child.pid}) was not ready within ${
          options.readyTimeoutS ?? 120
        } s; see "${options.logFile}"`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Reads the registration the parent wrote on stdin. */
export async function readRegistrationFromStdin(): Promise<EndpointRegistration> {
  const text = await new Response(Deno.stdin.readable).text();
  try {
    const reg = JSON.parse(text) as EndpointRegistration;
    if (typeof reg?.endpoint_id !== "string") throw new Error("no endpoint_id");
    return reg;
  } catch (err) {
    throw new Error(`Cannot read the registration on stdin: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Identity of a live process: its pid and its start time in clock ticks since boot (field 22 of
 * `/proc/<pid>/stat`), so a pid reused by another process is not taken for the first one.
 * `undefined` when the process is gone or a zombie.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { processIdentity } from "./daemon.ts";
 * assert.equal(processIdentity(Deno.pid)?.pid, Deno.pid);
 * ```
 */
export function processIdentity(pid: number): { pid: number; startTicks: string } | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // Fields after the command name (which may hold spaces) start at the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  return { pid, startTicks: fields[19] ?? "" };
}

/** What {@linkcode watchParent} watches; see {@linkcode processIdentity}. */
export type ProcessIdentity = NonNullable<ReturnType<typeof processIdentity>>;

/**
 * Calls `onGone` once when the process `parent` has exited (checked every `intervalMs`); returns
 * a function that stops watching. This is `start --die-with-parent`: an endpoint started by a job
 * script or a supervisor ends with it instead of living on unattended.
 *
 * @example
 * ```ts
 * import { processIdentity, watchParent } from "./daemon.ts";
 * const stop = watchParent(processIdentity(Deno.pid)!, () => console.log("gone"));
 * stop();
 * ```
 */
export function watchParent(
  parent: ProcessIdentity,
  onGone: () => void,
  intervalMs = 1_000,
): () => void {
  const timer = setInterval(() => {
    if (processIdentity(parent.pid)?.startTicks === parent.startTicks) return;
    clearInterval(timer);
    onGone();
  }, intervalMs);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
