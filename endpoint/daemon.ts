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
