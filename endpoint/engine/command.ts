/**
 * The one place that knows how this program starts its own processes (the daemon, a manager, a
 * worker). Under `deno run` that is this Deno with `run <entry file>` and the flags of each role;
 * in a `deno compile`d binary it is the binary itself with a hidden `__daemon` / `__manager` /
 * `__worker` subcommand (the binary's entry point dispatches on it), so providers (local, Slurm)
 * never build command lines themselves.
 *
 * A compiled binary cannot take Deno flags at run time: it runs with the permissions it was
 * compiled with ({@linkcode STANDALONE_FLAGS}). Its workers therefore sandbox themselves: each
 * runs its tasks in a Web Worker with the configured permission set (`FUNCX_WORKER_PERMISSIONS`,
 * see `worker_main.ts`), and the worker pool enforces `mem_per_worker` on resident memory in every
 * mode.
 *
 * @module
 */

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

/**
 * The flags the `funcx-endpoint` binary is compiled with (`compile/build.ts`). The worker sandbox
 * needs `--unstable-worker-options` (a Web Worker with its own permission set).
 */
export const STANDALONE_FLAGS: readonly string[] = ["--allow-all", "--unstable-worker-options"];

/**
 * Environment variable that makes a `deno run` process behave as the compiled binary: a JSON
 * array, the command line that plays the binary (see {@linkcode standInCommand}). The test suite
 * uses it to run the code path of a compiled binary where `deno compile` cannot fetch its runtime.
 */
export const STANDALONE_STAND_IN_ENV = "FUNCX_STANDALONE_STAND_IN";

/**
 * Environment variable through which a compiled binary's manager hands a worker its permission
 * set (JSON {@linkcode WorkerPermissions}); the worker then runs its tasks in a Web Worker with
 * those permissions.
 */
export const WORKER_PERMISSIONS_ENV = "FUNCX_WORKER_PERMISSIONS";

/** How this program starts a copy of itself. */
export interface SelfCommand {
  /** Whether this is a compiled binary (or the stand-in for one). */
  standalone: boolean;
  /** The command line before the subcommand (`[binary]` when compiled). */
  argv: readonly string[];
}

const ENTRY: Record<EngineRole, URL> = {
  manager: new URL("./manager_main.ts", import.meta.url),
  worker: new URL("./worker_main.ts", import.meta.url),
};
const CONFIG = new URL("../../deno.json", import.meta.url);
const CLI = new URL("../../cli/funcx_endpoint.ts", import.meta.url);

function standInArgv(): string[] | undefined {
  let raw: string | undefined;
  try {
    raw = Deno.env.get(STANDALONE_STAND_IN_ENV);
  } catch {
    return undefined; // a sandboxed worker under `deno run`: not the binary
  }
  if (!raw) return undefined;
  const argv: unknown = JSON.parse(raw);
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new Error(`${STANDALONE_STAND_IN_ENV} must be a JSON array of strings, not ${raw}`);
  }
  return argv;
}

/**
 * The path of a `file:` URL. Not `node:url`'s `fileURLToPath`: a worker imports this module, and
 * in Deno any `node:` import starts the Node compatibility layer in that process (some 4 MiB).
 */
export function fromFileUrl(url: URL): string {
  if (url.protocol !== "file:") throw new TypeError(`Not a file URL: ${url.href}`);
  return decodeURIComponent(url.pathname);
}

/** `deno run` of `entry` with `flags` and the project's config. */
function denoRun(entry: URL, flags: readonly string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    ...flags,
    `--config=${fromFileUrl(CONFIG)}`,
    fromFileUrl(entry),
  ];
}

/**
 * The one compiled-mode check: `Deno.build.standalone`, or the stand-in variable. In a compiled
 * binary the command is the binary itself.
 */
export function selfCommand(): SelfCommand {
  if (Deno.build.standalone) return { standalone: true, argv: [Deno.execPath()] };
  const standIn = standInArgv();
  if (standIn) return { standalone: true, argv: standIn };
  return { standalone: false, argv: denoRun(CLI, ["-A"]) };
}

/** Whether this process is a `deno compile`d binary (or its stand-in) rather than `deno run`. */
export function isCompiledBinary(): boolean {
  return selfCommand().standalone;
}

/**
 * The command line that plays the compiled `funcx-endpoint` binary with this Deno: the entry point
 * run with exactly the flags the binary is compiled with. Put it in the environment as
 * `FUNCX_STANDALONE_STAND_IN` (JSON) to run an endpoint down the compiled binary's code path.
 */
export function standInCommand(): string[] {
  return denoRun(CLI, STANDALONE_FLAGS);
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
 * The permissions of the Web Worker that runs a compiled binary's tasks: what
 * {@linkcode permissionFlags} gives a `deno run` worker, and nothing else.
 */
export function webWorkerPermissions(p: WorkerPermissions): Record<string, boolean | string[]> {
  const list = (values: readonly string[] | undefined) =>
    values && values.length > 0 ? [...values] : false;
  return {
    read: list(p.read),
    write: list(p.write),
    net: list(p.net),
    run: list(p.run),
    env: p.env === true ? true : list(p.env),
    sys: false,
    ffi: false,
    import: false,
  };
}

/**
 * The command line that starts an engine process with extra Deno flags (permissions, V8 flags).
 * A compiled binary cannot take Deno flags at run time; it runs with what it was compiled with,
 * and the manager hands a worker its sandbox in the environment instead.
 */
export function engineCommand(role: EngineRole, denoFlags: readonly string[] = []): string[] {
  const self = selfCommand();
  return self.standalone ? [...self.argv, `__${role}`] : denoRun(ENTRY[role], denoFlags);
}
