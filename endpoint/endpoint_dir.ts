/**
 * The on-disk layout of endpoints: `<config dir>/<name>/` holds `config.yaml`, `endpoint.json`
 * (`{endpoint_id}` once registered), `daemon.pid`, `daemon_status.json`, `endpoint.log` and `result_journal/`. This
 * module creates endpoint directories and reads their local state for `list`.
 *
 * @module
 */
import { join } from "node:path";
import { configTemplate } from "./config.ts";
import { readPidFile } from "./pid_file.ts";
import { readStatusFile } from "./status_file.ts";

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * Local status of an endpoint, from its files (as funcX `list`): `Disconnected` is a daemon that
 * died without cleaning up; `Reconnecting` a live daemon that waits for its broker (it keeps
 * running tasks and keeps their results on disk meanwhile).
 */
export type LocalStatus = "Initialized" | "Running" | "Reconnecting" | "Stopped" | "Disconnected";

/** One row of `list`. */
export interface EndpointListing {
  /** Directory name. */
  name: string;
  /** Registered id, once started. */
  endpointId: string | undefined;
  /** Local status. */
  status: LocalStatus;
}

/** The directory of endpoint `name`; throws `TypeError` for a name that is not a plain word. */
export function endpointDir(configDir: string, name: string): string {
  if (!NAME.test(name)) {
    throw new TypeError(
      `Invalid endpoint name "${name}": use letters, digits, ".", "_" and "-" only`,
    );
  }
  return join(configDir, name);
}

/** Path of `config.yaml` in an endpoint directory. */
export function configPath(dir: string): string {
  return join(dir, "config.yaml");
}

/** Path of `endpoint.log` in an endpoint directory. */
export function logPath(dir: string): string {
  return join(dir, "endpoint.log");
}

/** Whether `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** The id in `endpoint.json`, or `undefined` before the first registration. */
export async function readEndpointId(dir: string): Promise<string | undefined> {
  const file = join(dir, "endpoint.json");
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  try {
    const data = JSON.parse(text);
    return typeof data?.endpoint_id === "string" ? data.endpoint_id : undefined;
  } catch (err) {
    throw new Error(`Cannot read "${file}": ${(err as Error).message}`, { cause: err });
  }
}

/** Writes `endpoint.json`. */
export async function writeEndpointId(dir: string, endpointId: string): Promise<void> {
  await Deno.writeTextFile(
    join(dir, "endpoint.json"),
    JSON.stringify({ endpoint_id: endpointId }) + "\n",
    { mode: 0o600 },
  );
}

/**
 * Creates `<configDir>/<name>/config.yaml` from the commented template (or `text`, for example a
 * filled user template from `fillConfigTemplate`); directories are private
 * (0700). Throws `Deno.errors.AlreadyExists` rather than overwrite a config. Returns the file.
 */
export async function configureEndpoint(
  configDir: string,
  name: string,
  text: string = configTemplate(name),
): Promise<string> {
  const dir = endpointDir(configDir, name);
  await Deno.mkdir(configDir, { recursive: true, mode: 0o700 });
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = configPath(dir);
  try {
    await Deno.writeTextFile(file, text, { createNew: true, mode: 0o600 });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw new Deno.errors.AlreadyExists(
        `Endpoint "${name}" is already configured ("${file}"); not overwriting it`,
      );
    }
    throw err;
  }
  return file;
}

/** Local status of one endpoint directory. */
export async function localStatus(dir: string): Promise<LocalStatus> {
  const pid = await readPidFile(dir);
  if (pid.kind === "running") {
    return (await readStatusFile(dir))?.state === "disconnected" ? "Reconnecting" : "Running";
  }
  if (pid.kind === "stale") return "Disconnected";
  return (await readEndpointId(dir).catch(() => undefined)) ? "Stopped" : "Initialized";
}

/** Every configured endpoint under `configDir`, sorted by name. */
export async function listEndpoints(configDir: string): Promise<EndpointListing[]> {
  const out: EndpointListing[] = [];
  try {
    for await (const e of Deno.readDir(configDir)) {
      if (!e.isDirectory || !NAME.test(e.name)) continue;
      const dir = join(configDir, e.name);
      if (!(await exists(configPath(dir))) && !(await exists(join(dir, "endpoint.json")))) {
        continue;
      }
      out.push({
        name: e.name,
        endpointId: await readEndpointId(dir).catch(() => undefined),
        status: await localStatus(dir),
      });
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
