/**
 * What `funcx run` and `funcx submit` send: a function exported by a local file
 * (`FILE.ts#name`, sent as its source text as the SDK sends any function) or a command line
 * (`--shell`), with JSON arguments; and the cache that registers each of them once per service.
 *
 * @module
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { stripTypeScriptTypes } from "node:module";
import { type FuncXClient, ShellFunction } from "../mod.ts";
import { EXIT, FuncxCliError } from "./_funcx_output.ts";

/** A function to run: a live function from a file, or a command line. */
export type TaskFunction =
  | { kind: "function"; fn: (...args: never[]) => unknown; name: string; source: string }
  | { kind: "shell"; shell: ShellFunction; name: string; source: string };

/** Splits `FILE.ts#name` (the name defaults to `default`). */
export function parseFunctionSpec(spec: string): { file: string; exportName: string } {
  const hash = spec.lastIndexOf("#");
  const file = hash < 0 ? spec : spec.slice(0, hash);
  const exportName = hash < 0 ? "default" : spec.slice(hash + 1);
  if (!file || !exportName) {
    throw new FuncxCliError(
      EXIT.USAGE,
      "usage",
      `Invalid function "${spec}": write FILE.ts#name (the file and the name of its export)`,
    );
  }
  return { file, exportName };
}

/**
 * Imports `file`. A compiled binary cannot import a file it was not built with, so there (or
 * with `fromSource`) the file's text is stripped of its types and imported as a `data:` module:
 * the function must then be self-contained, as every function sent to an endpoint must be.
 */
async function importFile(file: string, fromSource: boolean): Promise<Record<string, unknown>> {
  const path = resolve(file);
  if (!fromSource && !Deno.build.standalone) return await import(pathToFileURL(path).href);
  let text = await Deno.readTextFile(path);
  if (/\.[mc]?tsx?$/.test(path)) text = stripTypeScriptTypes(text);
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return await import(`data:text/javascript;base64,${btoa(binary)}`);
}

/** Loads the function `spec` names (`FILE.ts#name`); exits 66 naming what is missing. */
export async function loadFunction(spec: string, fromSource = false): Promise<TaskFunction> {
  const { file, exportName } = parseFunctionSpec(spec);
  let mod: Record<string, unknown>;
  try {
    mod = await importFile(file, fromSource);
  } catch (err) {
    throw new FuncxCliError(
      EXIT.NOINPUT,
      "function_not_loaded",
      `Cannot load "${file}": ${(err as Error).message}`,
      { cause: err },
    );
  }
  const fn = mod[exportName];
  if (typeof fn !== "function") {
    const names = Object.keys(mod).filter((k) => typeof mod[k] === "function");
    throw new FuncxCliError(
      EXIT.NOINPUT,
      "function_not_loaded",
      `"${file}" has no exported function "${exportName}"` +
        (names.length ? ` (its functions: ${names.join(", ")})` : ""),
    );
  }
  const f = fn as (...args: never[]) => unknown;
  return { kind: "function", fn: f, name: exportName, source: f.toString() };
}

/** A command line to run on the endpoint; a non-zero exit fails its task. */
export function shellFunction(cmd: string): TaskFunction {
  const shell = new ShellFunction(cmd, { fail_on_nonzero: true });
  return { kind: "shell", shell, name: "shell", source: shell.source() };
}

/** Parses each argument as JSON; exits 64 naming the first that is not. */
export function parseJsonArgs(args: readonly string[]): unknown[] {
  return args.map((a, i) => {
    try {
      return JSON.parse(a);
    } catch {
      throw new FuncxCliError(
        EXIT.USAGE,
        "usage",
        `Argument ${i + 1} (${JSON.stringify(a)}) is not JSON: quote strings as '"text"'`,
      );
    }
  });
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Registers `fn` with the service unless this config dir's cache (`functions.json`) has it for
 * that service already, so a cron job does not register a new function on every run. With
 * `fresh`, registers again (the cached id was refused).
 */
export async function registeredFunction(
  client: FuncXClient,
  fn: TaskFunction,
  cacheFile: string,
  fresh = false,
): Promise<string> {
  const key = await sha256(`${client.serviceAddress}\n${fn.name}\n${fn.source}`);
  let cache: Record<string, string> = {};
  try {
    cache = JSON.parse(await Deno.readTextFile(cacheFile));
  } catch {
    // none yet, or unreadable: it is only a cache
  }
  const cached = cache[key];
  if (cached && !fresh) return cached;
  const id = fn.kind === "shell"
    ? await client.registerShellFunction(fn.shell)
    : await client.registerFunction(fn.fn, { name: fn.name });
  cache[key] = id;
  await Deno.writeTextFile(cacheFile, JSON.stringify(cache), { mode: 0o600 }).catch(() => {});
  return id;
}
