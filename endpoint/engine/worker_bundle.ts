/**
 * A worker started with `deno run` loads one file instead of its module graph: `worker_main.ts`
 * bundled (`deno bundle`, npm packages inlined) into the user's cache,
 * `$XDG_CACHE_HOME/funcx/worker-<hash>.js` (else `~/.cache/funcx/`). Each worker then skips
 * resolving and loading some thirty modules and the npm layer: about a fifth less CPU to start
 * (which hundreds of workers on a node pay at once) and about 5 MiB less resident memory each.
 *
 * The hash covers what the bundle is made of: every source file of the directories the worker's
 * graph lies in (`endpoint/engine/`, `sdk/protocol/`, and `sdk/shell_function.ts`; a test checks
 * that it stays there),
 * the project's `deno.json` and `deno.lock`, and the Deno version, so an edited source makes a
 * new bundle. It is made once per version and machine (a few hundred ms), written to a temporary
 * name and renamed, so managers starting together do not see half a file. When anything fails
 * (no cache directory, no bundler) workers load the module graph as before.
 *
 * A compiled binary's workers are the binary itself (`__worker`); this is for `deno run` only.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath as fromFileUrl, pathToFileURL } from "node:url";
import { getLogger } from "@logtape/logtape";

const log = getLogger(["funcx", "endpoint", "engine"]);

const ENTRY = new URL("./worker_main.ts", import.meta.url);
const CONFIG = new URL("../../deno.json", import.meta.url);
const LOCK = new URL("../../deno.lock", import.meta.url);
/** The directories (ending in `/`) and files that hold the worker's whole module graph. */
export const WORKER_SOURCES: readonly URL[] = [
  new URL("./", import.meta.url),
  new URL("../../sdk/protocol/", import.meta.url),
  new URL("../../sdk/shell_function.ts", import.meta.url),
];

/** The cache directory of this user, or undefined without a home. */
function cacheDir(): string | undefined {
  try {
    const xdg = Deno.env.get("XDG_CACHE_HOME");
    if (xdg) return join(xdg, "funcx");
    const home = Deno.env.get("HOME");
    return home ? join(home, ".cache", "funcx") : undefined;
  } catch {
    return undefined;
  }
}

/** SHA-256 of the worker's sources, the config, the lock file and the Deno version. */
async function sourceHash(): Promise<string> {
  const parts: Uint8Array[] = [new TextEncoder().encode(Deno.version.deno)];
  for (const source of WORKER_SOURCES) {
    const files: URL[] = [];
    if (!source.pathname.endsWith("/")) files.push(source);
    else {
      const names: string[] = [];
      for await (const e of Deno.readDir(source)) {
        if (e.isFile && e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) names.push(e.name);
      }
      for (const name of names.sort()) files.push(new URL(name, source));
    }
    for (const file of files) {
      parts.push(new TextEncoder().encode(`\0${file.pathname}\0`));
      parts.push(await Deno.readFile(file));
    }
  }
  for (const file of [CONFIG, LOCK]) {
    parts.push(await Deno.readFile(file).catch(() => new Uint8Array()));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

let ready: Promise<URL | undefined> | undefined;

/**
 * The bundled worker for this source version, made now if the cache does not have it; undefined
 * when it cannot be had (workers then load `worker_main.ts` and its graph). Made once a process.
 */
export function workerBundle(): Promise<URL | undefined> {
  const dir = cacheDir();
  ready ??= (dir === undefined ? Promise.resolve(undefined) : bundleWorker(dir)).catch((err) => {
    log.warn("Workers load their modules one by one: cannot bundle the worker ({err})", {
      err: String(err),
    });
    return undefined;
  });
  return ready;
}

/** The bundled worker of this source version in `dir`, made there first if it is not there. */
export async function bundleWorker(dir: string): Promise<URL> {
  const file = join(dir, `worker-${await sourceHash()}.js`);
  try {
    await Deno.stat(file);
    return pathToFileURL(file);
  } catch {
    // not made yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const partial = `${file}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      `--config=${fromFileUrl(CONFIG)}`,
      "--platform=deno",
      "-o",
      partial,
      fromFileUrl(ENTRY),
    ],
    cwd: dirname(fromFileUrl(CONFIG)),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(partial).catch(() => {});
    throw new Error(`deno bundle failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  await Deno.rename(partial, file);
  log.info("Bundled the worker into {file}", { file });
  return pathToFileURL(file);
}

/**
 * Whether a process's command line (`/proc/<pid>/cmdline`, its arguments separated by NULs or
 * spaces) is a worker's: one started from the bundle, from `worker_main.ts`, or a compiled
 * binary's `__worker`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isWorkerCommandLine } from "./worker_bundle.ts";
 * assert.ok(isWorkerCommandLine("deno\0run\0/home/u/.cache/funcx/worker-0123456789abcdef.js\0"));
 * assert.ok(isWorkerCommandLine("deno\0run\0/opt/funcx/endpoint/engine/worker_main.ts\0"));
 * assert.ok(isWorkerCommandLine("/usr/bin/funcx-endpoint\0__worker\0"));
 * assert.ok(isWorkerCommandLine("deno run /home/u/.cache/funcx/worker-0123456789abcdef.js"));
 * assert.ok(!isWorkerCommandLine("deno\0run\0/opt/funcx/endpoint/engine/manager_main.ts\0"));
 * ```
 */
export function isWorkerCommandLine(cmdline: string): boolean {
  return /\/funcx\/worker-[0-9a-f]{16}\.js([\0 ]|$)|worker_main\.ts([\0 ]|$)|[\0 ]__worker([\0 ]|$)/
    .test(cmdline);
}
