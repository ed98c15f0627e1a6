/**
 * The one place that knows how to start an engine process (a manager or a worker). Under
 * `deno run` that is this Deno with `run <entry file>`; in a `deno compile`d binary it will be the
 * binary itself with a hidden `__manager` / `__worker` subcommand (the binary's entry point
 * dispatches on it), so providers (local, Slurm) never build command lines themselves.
 *
 * @module
 */
import { basename } from "node:path";

/** Which engine process to start. */
export type EngineRole = "manager" | "worker";

/** The Deno permissions a worker runs with (from the endpoint config). */
export interface WorkerPermissions {
  /** Everything allowed (`-A`). @default true */
  all?: boolean;
  /** Readable paths. @default [] */
  read?: readonly string[];
  /** Writable paths. @default [] */
  write?: readonly string[];
  /** Reachable hosts (`host[:port]`). @default [] */
  net?: readonly string[];
  /** Readable environment variables, or `true` for all. @default [] */
  env?: readonly string[] | true;
  /** Runnable programs. @default [] */
  run?: readonly string[];
}

const ENTRY: Record<EngineRole, URL> = {
  manager: new URL("./manager_main.ts", import.meta.url),
  worker: new URL("./worker_main.ts", import.meta.url),
};

/** Whether this process is a `deno compile`d binary rather than `deno run`. */
export function isCompiledBinary(): boolean {
  return import.meta.url.includes("/deno-compile-") ||
    !/^deno(?:\.exe)?$/.test(basename(Deno.execPath()));
}

/** Deno flags for a permission set; always `--no-prompt` so a worker never waits on a TTY. */
export function permissionFlags(p: WorkerPermissions): string[] {
  if (p.all ?? true) return ["--no-prompt", "--allow-all"];
  const flags = ["--no-prompt"];
  const list = (name: string, values: readonly string[] | undefined) => {
    if (values && values.length > 0) flags.push(`--allow-${name}=${values.join(",")}`);
  };
  list("read", p.read);
  list("write", p.write);
  list("net", p.net);
  list("run", p.run);
  if (p.env === true) flags.push("--allow-env");
  else list("env", p.env);
  return flags;
}

/**
 * The command line that starts an engine process with extra Deno flags (permissions, V8 flags).
 * A compiled binary cannot take Deno flags at run time; it runs with what it was compiled with.
 */
export function engineCommand(role: EngineRole, denoFlags: readonly string[] = []): string[] {
  if (isCompiledBinary()) return [Deno.execPath(), `__${role}`];
  const config = new URL("../../deno.json", import.meta.url);
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    ...denoFlags,
    `--config=${config.pathname}`,
    ENTRY[role].pathname,
  ];
}
