/**
 * The worker's code in one file, for `deno run` workers: `deno bundle` of `worker_main.ts`,
 * written next to it and reused while its sources stay the same.
 *
 * A worker started from its module graph loads some 50 modules, among them an npm package, and
 * any npm or `node:` module starts Deno's Node compatibility layer in that process. From one
 * bundled file with no such imports it starts on about a quarter less CPU and ~10 MiB less memory
 * (`deno task bench`, `deno task bench:scaling`). A compiled binary's workers are the binary
 * itself and take no bundle.
 *
 * The bundle stays next to `worker_main.ts` so that what the worker finds relative to its own
 * URL (the endpoint's files, for trimming stack traces) is where it was. Its name carries a
 * fingerprint of the sources (every file under the roots the worker's graph comes from, by size
 * and modification time, the lock file and the Deno version), so a changed source gives a new
 * bundle; one not used for an hour is removed when another is made. Where the directory cannot be
 * written, or `deno bundle` fails, the worker runs from its module graph as before, and the
 * reason is logged once.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { engineCommand, fromFileUrl, isCompiledBinary } from "./command.ts";

const log = getLogger(["funcx", "endpoint", "engine"]);

/** Where a bundle comes from: its entry file and the directories its local modules lie in. */
export interface BundleSource {
  /** The entry module (a `file:` URL). */
  entry: URL;
  /** Directories that hold every local module of the entry's graph (`file:` URLs). */
  roots: readonly URL[];
  /** Files that also decide the bundle: the config and its lock file. */
  extra: readonly URL[];
  /** The config `deno bundle` resolves the graph with. */
  config: URL;
}

/** The worker's own bundle source: `worker_main.ts`, the engine's and the SDK's files. */
export const WORKER_BUNDLE_SOURCE: BundleSource = {
  entry: new URL("./worker_main.ts", import.meta.url),
  roots: [new URL("./", import.meta.url), new URL("../../sdk/", import.meta.url)],
  extra: [new URL("../../deno.json", import.meta.url), new URL("../../deno.lock", import.meta.url)],
  config: new URL("../../deno.json", import.meta.url),
};

/** How long a bundle of other sources is kept after its last use. */
export const STALE_MS = 60 * 60 * 1000;

/** The file name prefix of bundles (`.gitignore` and the formatter skip them). */
export const BUNDLE_PREFIX = ".bundle-";

/**
 * The command line that starts a worker with `denoFlags`: `deno run` of its bundle (without the
 * project's config, which it no longer needs) where one can be made, else
 * {@linkcode engineCommand}'s (the module graph, or the compiled binary itself).
 */
export async function workerCommand(denoFlags: readonly string[]): Promise<string[]> {
  const bundle = isCompiledBinary() ? undefined : await bundleFor();
  if (bundle === undefined) return engineCommand("worker", denoFlags);
  return [Deno.execPath(), "run", "--quiet", ...denoFlags, "--no-config", bundle];
}

const making = new Map<string, Promise<string | undefined>>();
const warned = new Set<string>();

/**
 * The path of the bundle of `source.entry`, made when missing or stale; undefined when it cannot
 * be made (the reason is logged once a process). Pools that start together share one making.
 */
export function bundleFor(
  source: BundleSource = WORKER_BUNDLE_SOURCE,
): Promise<string | undefined> {
  const key = source.entry.href;
  let p = making.get(key);
  if (!p) {
    p = makeBundle(source).catch((err) => {
      if (!warned.has(key)) {
        warned.add(key);
        log.warn("Workers start from their module graph: {reason}", {
          reason: (err as Error).message,
        });
      }
      return undefined;
    }).finally(() => making.delete(key));
    making.set(key, p);
  }
  return p;
}

async function makeBundle(source: BundleSource): Promise<string> {
  const entry = fromFileUrl(source.entry); // throws for an entry that is not a local file
  const dir = entry.slice(0, entry.lastIndexOf("/"));
  const base = entry.slice(dir.length + 1).replace(/\.[jt]s$/, "");
  const name = `${BUNDLE_PREFIX}${base}-${await fingerprint(source)}.js`;
  const path = `${dir}/${name}`;
  try {
    // Marked as in use: bundles unused for a while are removed (below).
    const now = new Date();
    await Deno.utime(path, now, now);
    return path;
  } catch {
    // not made yet
  }
  const temp = `${dir}/${BUNDLE_PREFIX}${base}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", `--config=${fromFileUrl(source.config)}`, "-o", temp, entry],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const why = new TextDecoder().decode(out.stderr).trim().split("\n").slice(0, 3).join(" ");
      throw new Error(`deno bundle ${entry} failed (${why || `exit code ${out.code}`})`);
    }
    // Rename is atomic: a manager starting beside this one sees the whole bundle or none.
    await Deno.rename(temp, path);
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
  // Bundles of other sources unused for an hour go: a daemon started before the sources changed
  // may still be starting workers from its own for a while.
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.startsWith(`${BUNDLE_PREFIX}${base}-`) || e.name === name) continue;
    const old = `${dir}/${e.name}`;
    const used = (await Deno.stat(old).catch(() => undefined))?.mtime?.getTime();
    if (used !== undefined && Date.now() - used > STALE_MS) await Deno.remove(old).catch(() => {});
  }
  return path;
}

/**
 * A fingerprint of what decides the bundle: each file under the roots (path, size, modification
 * time), the extra files, the Deno version. Stats only: a few ms for the engine's and SDK's files.
 */
export async function fingerprint(source: BundleSource): Promise<string> {
  const lines: string[] = [Deno.version.deno];
  const note = async (path: string) => {
    try {
      const s = await Deno.stat(path);
      lines.push(`${path} ${s.size} ${s.mtime?.getTime()}`);
    } catch {
      lines.push(`${path} -`);
    }
  };
  const walk = async (dir: string): Promise<void> => {
    const names: { name: string; isDirectory: boolean }[] = [];
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.startsWith(".")) names.push({ name: e.name, isDirectory: e.isDirectory });
    }
    names.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const e of names) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (/\.[jt]sx?$|\.json$/.test(e.name)) await note(path);
    }
  };
  for (const root of source.roots) await walk(fromFileUrl(root).replace(/\/$/, ""));
  for (const f of source.extra) await note(fromFileUrl(f));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(lines.join("\n")));
  return new Uint8Array(digest).toHex().slice(0, 16);
}
