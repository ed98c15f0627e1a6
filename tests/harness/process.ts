/**
 * Real child processes for tests, the demo and the dev stack: spawn a `deno run` entry point,
 * wait for its one-line JSON readiness event on stdout, keep its stderr in a log file, and stop
 * it (SIGTERM, then SIGKILL after a grace period) no matter how the caller ends.
 *
 * @module
 */
import { join } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

/** `deno run` arguments for a repository script (all permissions, the repo's config). */
export function denoRunArgs(script: string, args: readonly string[]): string[] {
  return [
    "run",
    "--quiet",
    "-A",
    `--config=${join(ROOT, "deno.json")}`,
    join(ROOT, script),
    ...args,
  ];
}

/** Options of {@linkcode spawnDeno}. */
export interface SpawnOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** File that receives the child's stderr. */
  logFile: string;
  /** Also copy stderr to this process's stderr. @default false */
  echo?: boolean;
  /** Seconds to wait for the readiness event. @default 60 */
  readyTimeoutS?: number;
  /** Event name that means ready. */
  readyEvent: string;
}

/** A child process started by {@linkcode spawnDeno}. */
export class ChildHandle implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly ready: Record<string, unknown>;
  readonly logFile: string;
  readonly #done: Promise<Deno.CommandStatus>;
  #stopped = false;

  constructor(
    child: Deno.ChildProcess,
    ready: Record<string, unknown>,
    logFile: string,
    done: Promise<Deno.CommandStatus>,
  ) {
    this.child = child;
    this.ready = ready;
    this.logFile = logFile;
    this.#done = done;
  }

  /** Resolves with the exit status. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#done;
  }

  /** Sends a signal (ignored if the process is gone). */
  signal(sig: Deno.Signal): void {
    try {
      this.child.kill(sig);
    } catch {
      // already exited
    }
  }

  /** SIGTERM, then SIGKILL after `graceS`; idempotent. Returns the exit status. */
  async stop(graceS = 10): Promise<Deno.CommandStatus> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.signal("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const killed = new Promise<void>((r) => {
        timer = setTimeout(() => {
          this.signal("SIGKILL");
          r();
        }, graceS * 1000);
      });
      await Promise.race([this.#done, killed]);
      clearTimeout(timer);
    }
    return await this.#done;
  }

  /** The log file's text. */
  async log(): Promise<string> {
    return await Deno.readTextFile(this.logFile).catch(() => "");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Runs `deno run -A <script> ...args` from the repository and waits for its ready event. */
export async function spawnDeno(
  script: string,
  args: readonly string[],
  options: SpawnOptions,
): Promise<ChildHandle> {
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRunArgs(script, args),
    env: options.env ?? {},
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log = await Deno.open(options.logFile, { create: true, append: true });
  const logDone = child.stderr.pipeTo(
    new WritableStream({
      async write(chunk) {
        await log.write(chunk);
        if (options.echo) await Deno.stderr.write(chunk);
      },
      close() {
        log.close();
      },
      abort() {
        log.close();
      },
    }),
  ).catch(() => {});
  const { promise: readyP, resolve, reject } = Promise.withResolvers<Record<string, unknown>>();
  const outDone = (async () => {
    const lines = child.stdout.pipeThrough(new TextDecoderStream());
    let buf = "";
    for await (const chunk of lines) {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const ev = JSON.parse(line);
          if (ev && ev.event === options.readyEvent) resolve(ev);
        } catch {
          // not an event line
        }
      }
    }
  })();
  const done = (async () => {
    const status = await child.status;
    await Promise.all([outDone, logDone]);
    reject(new Error(`${script} exited with code ${status.code} before it was ready`));
    return status;
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const ready = await Promise.race([
      readyP,
      new Promise<never>((_, rej) => {
        timer = setTimeout(
          () => rej(new Error(`${script} was not ready within ${options.readyTimeoutS ?? 60} s`)),
          (options.readyTimeoutS ?? 60) * 1000,
        );
      }),
    ]);
    return new ChildHandle(child, ready, options.logFile, done);
  } catch (err) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
    await done;
    const tail = (await Deno.readTextFile(options.logFile).catch(() => "")).slice(-3000);
    throw new Error(`${(err as Error).message}\n--- ${options.logFile} ---\n${tail}`);
  } finally {
    clearTimeout(timer);
  }
}

/** How long {@linkcode runDeno} lets a script run before it kills it and fails. */
export const RUN_DENO_DEADLINE_MS = 180_000;

/**
 * Kills `child` (SIGKILL) if it is still there after `ms`: a script that never exits (a
 * connection left open, say) fails its test instead of hanging it. `stop()` disarms it and says
 * whether it fired.
 */
export function killAfter(child: Deno.ChildProcess, ms: number): { stop(): boolean } {
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  }, ms);
  return {
    stop: () => {
      clearTimeout(timer);
      return fired;
    },
  };
}

/** Runs a `deno run` entry point to completion (with `stdin` as its input, if given) and returns its stdout. */
export async function runDeno(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRunArgs(script, args),
    env,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const deadline = killAfter(child, RUN_DENO_DEADLINE_MS);
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (deadline.stop()) {
    throw new Error(
      `${script} ${args.join(" ")} did not exit within ${RUN_DENO_DEADLINE_MS / 1000} s; ` +
        `it printed: ${stdout.slice(-2000)}${new TextDecoder().decode(out.stderr).slice(-2000)}`,
    );
  }
  if (!out.success) {
    throw new Error(
      `${script} ${args.join(" ")} failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return stdout;
}
