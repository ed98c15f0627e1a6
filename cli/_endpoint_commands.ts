/**
 * The `funcx-endpoint` commands other than `start`: configure, list, stop, delete, logout and
 * whoami. Each returns its exit code or throws {@linkcode CliExit}.
 *
 * @module
 */
import { join } from "node:path";
import { FuncxAPIError } from "../sdk/errors.ts";
import type { FuncXClient } from "../sdk/client.ts";
import { ConfigError, envOverrides, fillConfigTemplate, loadConfig } from "../endpoint/config.ts";
import {
  configPath,
  configureEndpoint,
  endpointDir,
  exists,
  listEndpoints,
  readEndpointId,
} from "../endpoint/endpoint_dir.ts";
import { readPidFile, removePidFile, terminateProcessTree } from "../endpoint/pid_file.ts";
import { cliClient } from "./_endpoint_start.ts";
import { CliExit, type CommonOptions, EXIT } from "./_endpoint_exit.ts";
import { LoginManager } from "../sdk/login_manager.ts";
import { multiUserConfigTemplate, writeMultiUserFiles } from "../endpoint/multi_user_files.ts";
import { TokenStore } from "../sdk/token_store.ts";
import { table } from "./_table.ts";

/** `configure [NAME]`. */
export async function configureCommand(
  name: string,
  common: CommonOptions,
  template?: string,
  multiUser = false,
): Promise<number> {
  let file: string;
  try {
    const text = template === undefined
      ? (multiUser ? multiUserConfigTemplate(name) : undefined)
      : await readTemplate(template, name);
    file = await configureEndpoint(common.configDir, name, text);
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) throw new CliExit(EXIT.ERROR, err.message);
    throw err;
  }
  console.log(`Created profile for endpoint "${name}"\n\n    Configuration file: ${file}\n`);
  if (multiUser) {
    const files = await writeMultiUserFiles(endpointDir(common.configDir, name));
    console.log(
      `A multi-user endpoint: map service users to local accounts, and say how their user ` +
        `endpoints run, in:\n\n${files.map((f) => `    ${f}`).join("\n")}\n\n` +
        "Start it as root (or an account allowed to switch users).\n",
    );
  }
  console.log(`Use the "start" subcommand to run it:\n\n    $ funcx-endpoint start ${name}`);
  return EXIT.OK;
}

/** Reads and fills a `--endpoint-config` template; exits 65 naming the bad field. */
async function readTemplate(path: string, name: string): Promise<string> {
  let template: string;
  try {
    template = await Deno.readTextFile(path);
  } catch (err) {
    throw new CliExit(
      EXIT.ERROR,
      `Cannot read the config template "${path}": ${(err as Error).message}`,
    );
  }
  try {
    return fillConfigTemplate(path, template, name);
  } catch (err) {
    if (err instanceof ConfigError) {
      throw new CliExit(EXIT.DATAERR, `${err.message}\nNothing was created; fix the template.`);
    }
    throw err;
  }
}

/** `list [--json]`. */
export async function listCommand(common: CommonOptions, json = false): Promise<number> {
  const eps = await listEndpoints(common.configDir);
  if (json) {
    console.log(JSON.stringify({
      endpoints: eps.map((e) => ({
        name: e.name,
        endpoint_id: e.endpointId ?? null,
        status: e.status,
      })),
    }));
    return EXIT.OK;
  }
  if (eps.length === 0) {
    console.log("No endpoints configured!\n\n  (Hint: funcx-endpoint configure)");
    return EXIT.OK;
  }
  console.log(table(
    ["Endpoint ID", "Status", "Endpoint Name"],
    eps.map((e) => [e.endpointId ?? "None", e.status, e.name]),
  ));
  return EXIT.OK;
}

async function serviceClient(name: string, common: CommonOptions): Promise<FuncXClient> {
  const dir = endpointDir(common.configDir, name);
  const file = configPath(dir);
  const env = envOverrides(Deno.env.toObject());
  const address = (await exists(file))
    ? (await loadConfig(file, env).catch((err) => {
      throw new CliExit(EXIT.DATAERR, (err as Error).message);
    })).funcx_service_address
    : String(env["funcx_service_address"] ?? "http://127.0.0.1:8000");
  return await cliClient(address, common);
}

function serviceFailure(doing: string, err: unknown): CliExit {
  if (err instanceof CliExit) return err;
  if (err instanceof FuncxAPIError) {
    return new CliExit(EXIT.UNAVAILABLE, `${doing}: ${err.message}`);
  }
  return new CliExit(EXIT.TEMPFAIL, `${doing}: the service cannot be reached (${String(err)})`);
}

/** Stops the local daemon of `name`; returns whether one was running. */
async function stopLocal(name: string, dir: string): Promise<boolean> {
  const pid = await readPidFile(dir);
  if (pid.kind === "none") return false;
  if (pid.kind === "stale") {
    await removePidFile(dir);
    console.error(`Removed the stale pid file of endpoint "${name}" (pid ${pid.pid ?? "?"})`);
    return false;
  }
  const killed = await terminateProcessTree(pid.pid, 10);
  await removePidFile(dir);
  if (killed) console.error(`Endpoint "${name}" did not stop within 10 s and was killed`);
  return true;
}

/** `stop [NAME] [--remote]`. */
export async function stopCommand(
  name: string,
  flags: { remote?: boolean },
  common: CommonOptions,
): Promise<number> {
  const dir = endpointDir(common.configDir, name);
  if (!(await exists(dir))) throw new CliExit(EXIT.ERROR, `Endpoint "${name}" does not exist`);
  if (flags.remote) {
    const id = await readEndpointId(dir);
    if (!id) throw new CliExit(EXIT.ERROR, `Endpoint "${name}" was never registered`);
    const client = await serviceClient(name, common);
    try {
      await client.lockEndpoint(id);
    } catch (err) {
      throw serviceFailure(`Cannot lock endpoint "${name}" (${id})`, err);
    }
    console.log(`Endpoint "${name}" (${id}) is locked: every process using it will stop`);
  }
  const wasRunning = await stopLocal(name, dir);
  console.log(
    wasRunning ? `Endpoint "${name}" is now stopped` : `Endpoint "${name}" is not running`,
  );
  return EXIT.OK;
}

/** `delete [NAME] [--yes] [--force]`. */
export async function deleteCommand(
  name: string,
  flags: { yes?: boolean; force?: boolean },
  common: CommonOptions,
): Promise<number> {
  const dir = endpointDir(common.configDir, name);
  if (!(await exists(dir))) throw new CliExit(EXIT.ERROR, `Endpoint "${name}" does not exist`);
  if (!flags.yes) {
    if (!Deno.stdin.isTerminal()) {
      throw new CliExit(EXIT.ERROR, `Not deleting endpoint "${name}" without --yes (no terminal)`);
    }
    if (!confirm(`Delete endpoint "${name}" here and on the service?`)) return EXIT.ERROR;
  }
  const id = await readEndpointId(dir).catch(() => undefined);
  if (id) {
    try {
      const client = await serviceClient(name, common);
      await client.deleteEndpoint(id);
    } catch (err) {
      const failure = serviceFailure(
        `Cannot delete endpoint "${name}" (${id}) on the service`,
        err,
      );
      if (!flags.force) {
        throw new CliExit(failure.code, `${failure.message} (--force deletes it here anyway)`);
      }
      console.error(`${failure.message}; deleting it here anyway (--force)`);
    }
  }
  await stopLocal(name, dir);
  await Deno.remove(dir, { recursive: true });
  console.log(`Endpoint "${name}" is deleted`);
  return EXIT.OK;
}

/** `logout [--force]`. */
export async function logoutCommand(
  flags: { force?: boolean },
  common: CommonOptions,
): Promise<number> {
  const running = (await listEndpoints(common.configDir)).filter((e) =>
    e.status === "Running" || e.status === "Reconnecting"
  );
  if (running.length > 0 && !flags.force) {
    throw new CliExit(
      EXIT.ERROR,
      `Not logging out with running endpoints (${running.map((e) => e.name).join(", ")}) ` +
        "without --force",
    );
  }
  const store = join(common.configDir, "storage.db");
  if (await exists(store)) {
    // Revoke every stored login at its service before forgetting it.
    const tokens = await TokenStore.open(store);
    const logins = tokens.environments().map((environment) => ({
      environment,
      serviceAddress: tokens.get(environment)!.serviceAddress,
    }));
    tokens.close();
    for (const l of logins) {
      const lm = new LoginManager({ ...l, storePath: store });
      await lm.logout();
      await lm.close();
      console.log(`Logged out of ${l.serviceAddress}`);
    }
    await Deno.remove(store);
    for (const suffix of ["-wal", "-shm"]) await Deno.remove(store + suffix).catch(() => {});
    console.log(`Removed the stored tokens ("${store}")`);
  } else {
    console.log(
      `No stored login to remove ("${store}" does not exist). Client credentials in ` +
        "FUNCX_SDK_CLIENT_ID and FUNCX_SDK_CLIENT_SECRET are not affected.",
    );
  }
  return EXIT.OK;
}

/** `whoami [--json]`. */
export async function whoamiCommand(common: CommonOptions, json = false): Promise<number> {
  const client = await serviceClient("default", common);
  try {
    const me = await client.whoami();
    if (json) {
      console.log(JSON.stringify({
        user: me.username,
        user_id: me.id,
        client_id: me.client_id,
        service: client.serviceAddress,
      }));
      return EXIT.OK;
    }
    console.log(`User:      ${me.username} (${me.id})`);
    console.log(`Service:   ${client.serviceAddress}`);
    if (me.client_id) console.log(`Client id: ${me.client_id}`);
  } catch (err) {
    throw serviceFailure("Cannot ask the service who this is", err);
  }
  return EXIT.OK;
}
