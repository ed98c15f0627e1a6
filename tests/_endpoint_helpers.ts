/**
 * Helpers of the `endpoint_*` tests: a broker vhost plus a real service, and the
 * `funcx-endpoint` CLI run as a subprocess the way a user runs it.
 *
 * @module
 */
import { join } from "node:path";
import type { FuncXClient } from "../mod.ts";
import {
  type BrokerAccess,
  clientOf,
  createVhost,
  deleteVhost,
  type ServiceHandle,
  sharedBroker,
  startService,
} from "./harness/stack.ts";
import { denoRunArgs } from "./harness/process.ts";

/** What {@linkcode cli} saw. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A vhost and a service, and the environment a user of the CLI would have. */
export interface ServiceEnv extends AsyncDisposable {
  dir: string;
  configDir: string;
  access: BrokerAccess;
  vhost: string;
  service: ServiceHandle;
  env: Record<string, string>;
  client: FuncXClient;
  /** Runs `funcx-endpoint ...args`. */
  cli(args: string[], env?: Record<string, string>): Promise<CliResult>;
}

/** Starts a service on a fresh vhost; dispose to stop it and remove everything. */
export async function serviceEnv(): Promise<ServiceEnv> {
  const access = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-ep-test-" });
  const vhost = `ep-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(access, vhost);
  const service = await startService({ dir, amqpUrl });
  const configDir = join(dir, "config");
  const env = { ...service.env, FUNCX_CONFIG_DIR: configDir, NO_COLOR: "1" };
  return {
    dir,
    configDir,
    access,
    vhost,
    service,
    env,
    client: clientOf(service),
    cli: (args, extra = {}) => cli(args, { ...env, ...extra }),
    async [Symbol.asyncDispose]() {
      // Whatever a failed test left running in this directory goes too.
      for (const pid of processesMentioning(dir)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      await service.process.stop();
      await deleteVhost(access, vhost).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs `funcx-endpoint` with `env` added to this environment. */
export async function cli(args: string[], env: Record<string, string>): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: denoRunArgs("cli/funcx_endpoint.ts", args),
    env,
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Pids of live processes (other than this one) whose command line contains `text`. */
export function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z") continue;
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      if (cmd.includes(text)) out.push(Number(e.name));
    } catch {
      // exited
    }
  }
  return out;
}

/** Pids of live processes in process group `pgid` (the daemon's own lookup). */
export { processGroupMembers as processGroup } from "../endpoint/pid_file.ts";

/** Writes `config.yaml` of endpoint `name` (after `configure`). */
export async function writeConfig(configDir: string, name: string, yaml: string): Promise<void> {
  await Deno.writeTextFile(join(configDir, name, "config.yaml"), yaml);
}

/** Config for fast tests: one worker, quick reconnects and heartbeats. */
export function fastConfig(extra = ""): string {
  return [
    "heartbeat_period: 1",
    "reconnect_delay_min: 0.2",
    "reconnect_delay_max: 0.5",
    "max_consecutive_failures: 20",
    "engine:",
    "  max_workers_per_node: 2",
    extra,
  ].join("\n") + "\n";
}

/** Closes every broker connection of endpoint processes on `vhost`; returns how many. */
export async function dropEndpointConnections(
  access: BrokerAccess,
  vhost: string,
): Promise<number> {
  return await dropConnections(access, vhost, "funcx-endpoint");
}

/** Closes every broker connection on `vhost` whose name starts with `prefix`; returns how many. */
export async function dropConnections(
  access: BrokerAccess,
  vhost: string,
  prefix: string,
): Promise<number> {
  const auth = { authorization: `Basic ${btoa(`${access.user}:${access.password}`)}` };
  const res = await fetch(
    `${access.managementUrl}/api/vhosts/${encodeURIComponent(vhost)}/connections`,
    { headers: auth },
  );
  const conns = await res.json() as Array<
    { name: string; client_properties?: { connection_name?: string } }
  >;
  let n = 0;
  for (const c of conns) {
    if (!c.client_properties?.connection_name?.startsWith(prefix)) continue;
    const del = await fetch(
      `${access.managementUrl}/api/connections/${encodeURIComponent(c.name)}`,
      { method: "DELETE", headers: auth },
    );
    await del.body?.cancel();
    if (del.ok) n++;
  }
  return n;
}

/** Polls `check` every 100 ms until it returns a value other than `undefined`/`false`. */
export async function until<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutS = 60,
): Promise<T> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutS} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
