/**
 * `funcx-endpoint start`: load and validate the config (file, then env, then flags), log in,
 * register in the foreground (so its errors reach the user with funcX's exit codes), write
 * `endpoint.json`, then either run here (`--foreground` or `detach_endpoint: false`) or hand the
 * registration to a detached `__daemon` process.
 *
 * @module
 */
import {
  ConfigError,
  type ConfigOverrides,
  type EndpointConfig,
  envOverrides,
  loadConfig,
} from "../endpoint/config.ts";
import {
  configPath,
  endpointDir,
  exists,
  logPath,
  readEndpointId,
  writeEndpointId,
} from "../endpoint/endpoint_dir.ts";
import { claimPidFile, readPidFile, releasePidFile, removePidFile } from "../endpoint/pid_file.ts";
import { registerEndpoint, RegistrationError } from "../endpoint/registration.ts";
import {
  DaemonFailed,
  type ProcessIdentity,
  processIdentity,
  readRegistrationFromStdin,
  spawnDaemon,
  watchParent,
} from "../endpoint/daemon.ts";
import { BrokerUnreachable, Endpoint, EndpointRefused } from "../endpoint/endpoint.ts";
import { workerPlan } from "../endpoint/engine/manager.ts";
import type { MultiUserEngine } from "../endpoint/user_endpoints.ts";
import { selfCommand } from "../endpoint/engine/command.ts";
import type { EndpointRegistration, FuncXClient } from "../sdk/client.ts";
import { configureEndpointLogging } from "./_endpoint_logging.ts";
import { type MetricsServer, serveEndpointMetrics } from "../endpoint/metrics.ts";

import { CliExit, type CommonOptions, EXIT } from "./_endpoint_exit.ts";

/** Flags of `start`. */
export interface StartFlags {
  endpointUuid?: string;
  foreground?: boolean;
  workers?: string;
  heartbeat?: string;
  /** Stop when the process that ran `start` exits. */
  dieWithParent?: boolean;
  /** (`__daemon` only) the `pid:ticks` identity of that process. */
  parent?: string;
}

function numberFlag(flag: string, value: string, min: number, integer: boolean): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new CliExit(
      EXIT.DATAERR,
      `Invalid ${flag} "${value}": expected a ${integer ? "whole " : ""}number >= ${min}`,
    );
  }
  return n;
}

function flagOverrides(flags: StartFlags): ConfigOverrides {
  const o: ConfigOverrides = {};
  if (flags.workers !== undefined) {
    o["engine"] = { max_workers_per_node: numberFlag("--workers", flags.workers, 1, true) };
  }
  if (flags.heartbeat !== undefined) {
    o["heartbeat_period"] = numberFlag("--heartbeat", flags.heartbeat, 0.1, false);
  }
  if (flags.foreground) o["detach_endpoint"] = false;
  return o;
}

/** Loads `<dir>/config.yaml` with env and flag overrides; exits 65 naming the bad field. */
export async function loadEndpointConfig(
  name: string,
  dir: string,
  flags: StartFlags,
): Promise<EndpointConfig> {
  const file = configPath(dir);
  if (!(await exists(file))) {
    throw new CliExit(
      EXIT.ERROR,
      `Endpoint "${name}" is not configured! Create it first:\n` +
        `  1. funcx-endpoint configure ${name}\n  2. Edit "${file}"\n` +
        `  3. funcx-endpoint start ${name}`,
    );
  }
  try {
    return await loadConfig(file, envOverrides(Deno.env.toObject()), flagOverrides(flags));
  } catch (err) {
    if (err instanceof ConfigError) throw new CliExit(EXIT.DATAERR, err.message);
    throw err;
  }
}

function daemonCommand(
  name: string,
  common: CommonOptions,
  flags: StartFlags,
  parent: ProcessIdentity | undefined,
): string[] {
  const extra = [
    "-c",
    common.configDir,
    ...(flags.workers !== undefined ? ["--workers", flags.workers] : []),
    ...(flags.heartbeat !== undefined ? ["--heartbeat", flags.heartbeat] : []),
    ...(common.debug ? ["--debug"] : []),
    ...(parent ? ["--parent", `${parent.pid}:${parent.startTicks}`] : []),
  ];
  return [...selfCommand().argv, "__daemon", name, ...extra];
}

/** `start [NAME]`; returns the exit code. */
export async function startCommand(
  name: string,
  flags: StartFlags,
  common: CommonOptions,
): Promise<number> {
  const dir = endpointDir(common.configDir, name);
  const config = await loadEndpointConfig(name, dir, flags);
  const foreground = !config.detach_endpoint;
  // The process that ran `start` (a shell, a job script, a supervisor).
  const parent = flags.dieWithParent ? processIdentity(Deno.ppid) : undefined;
  await configureEndpointLogging({
    debug: common.debug,
    console: foreground || common.logToConsole,
    color: common.color,
    ...(foreground ? { file: logPath(dir) } : {}),
  });
  const pid = await readPidFile(dir);
  if (pid.kind === "running") {
    throw new CliExit(EXIT.ERROR, `Endpoint "${name}" is already running (pid ${pid.pid})`);
  }
  if (pid.kind === "stale") {
    await removePidFile(dir);
    console.error(
      `Removed the stale pid file of endpoint "${name}" (pid ${pid.pid ?? "?"} is not a ` +
        "running endpoint): a prior instance ended without cleaning up",
    );
  }
  const client = await cliClient(config.funcx_service_address, common);
  let registration: EndpointRegistration;
  try {
    registration = await registerEndpoint(client, {
      name,
      endpointId: (await readEndpointId(dir)) ?? flags.endpointUuid,
      config,
    });
  } catch (err) {
    if (!(err instanceof RegistrationError)) throw err;
    const code = {
      blocked: EXIT.UNAVAILABLE,
      unreachable: EXIT.TEMPFAIL,
      unauthorized: EXIT.ERROR,
      bad_response: EXIT.SOFTWARE,
    }[err.kind];
    throw new CliExit(code, err.message);
  }
  await writeEndpointId(dir, registration.endpoint_id);
  if (foreground) return await runEndpoint(name, dir, config, registration, true, parent);
  let ready: Record<string, unknown>;
  try {
    ({ ready } = await spawnDaemon({
      endpointDir: dir,
      logFile: logPath(dir),
      command: daemonCommand(name, common, flags, parent),
      registration,
    }));
  } catch (err) {
    if (err instanceof DaemonFailed) throw new CliExit(err.exitCode || EXIT.ERROR, err.message);
    throw err;
  }
  console.log(`Starting endpoint; registered ID: ${registration.endpoint_id}`);
  console.log(workersLine(config));
  if (ready["broker"] === "unreachable") console.error(BROKER_WAIT_NOTE);
  return EXIT.OK;
}

/** How many workers the endpoint runs per node, and why that many. */
export function workersLine(config: EndpointConfig): string {
  if (config.multi_user) {
    return "Multi-user: each user's tasks run in a user endpoint under their local account";
  }
  const e = config.engine;
  if (e.provider.type !== "local") {
    return `Workers: up to ${e.max_workers_per_node} per node, fewer where a node's cores ` +
      `(at cores_per_worker ${e.cores_per_worker}) or memory allow fewer`;
  }
  const plan = workerPlan(e, navigator.hardwareConcurrency, Deno.systemMemoryInfo().available);
  return `Workers: ${plan.count} per block: ${plan.why}`;
}

const BROKER_WAIT_NOTE = "The broker cannot be reached yet: the endpoint keeps trying (with " +
  "backoff, up to max_consecutive_failures when set); see its log";

/**
 * A logged-in client for a command (the device flow runs when on a terminal); no login is exit 1
 * with the message that says how to get one.
 */
export async function cliClient(address: string, common: CommonOptions): Promise<FuncXClient> {
  // Loaded here: the daemon, which never logs in, does not carry the SDK client.
  const { loginClient, NotLoggedIn } = await import("./_endpoint_login.ts");
  try {
    return (await loginClient(address, {
      configDir: common.configDir,
      interactive: Deno.stdin.isTerminal(),
    })).client;
  } catch (err) {
    if (err instanceof NotLoggedIn) throw new CliExit(EXIT.ERROR, err.message);
    throw err;
  }
}

/** The hidden `__daemon NAME` command: the detached half of `start`. */
export async function daemonCommandMain(
  name: string,
  flags: StartFlags,
  common: CommonOptions,
): Promise<number> {
  const dir = endpointDir(common.configDir, name);
  await configureEndpointLogging({ debug: common.debug, file: logPath(dir) });
  const registration = await readRegistrationFromStdin();
  const config = await loadEndpointConfig(name, dir, flags);
  return await runEndpoint(name, dir, config, registration, false, parseParent(flags.parent));
}

/** Runs a registered endpoint in this process until it stops; returns the exit code. */
async function runEndpoint(
  name: string,
  dir: string,
  config: EndpointConfig,
  registration: EndpointRegistration,
  foreground: boolean,
  parent: ProcessIdentity | undefined,
): Promise<number> {
  if (parent && processIdentity(parent.pid)?.startTicks !== parent.startTicks) {
    throw new CliExit(
      EXIT.ERROR,
      `Endpoint "${name}" not started: the process it should die with (pid ${parent.pid}) ` +
        "has already exited (--die-with-parent)",
    );
  }
  try {
    await claimPidFile(dir);
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw new CliExit(EXIT.ERROR, `Endpoint "${name}": ${(err as Error).message}`);
    }
    throw err;
  }
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"];
  const handlers = new Map<Deno.Signal, () => void>();
  let unwatch = () => {};
  let metrics: MetricsServer | undefined;
  try {
    let ep: Endpoint;
    try {
      const engine = config.multi_user ? await startMultiUserEngine(name, dir, config) : undefined;
      ep = await Endpoint.start({
        registration,
        config,
        endpointDir: dir,
        ...(engine ? { engine } : {}),
      });
    } catch (err) {
      if (err instanceof CliExit) throw err;
      throw new CliExit(
        exitCodeOf(err as Error),
        `Cannot start endpoint "${name}": ${(err as Error).message}`,
      );
    }
    for (const sig of signals) {
      const h = () => void ep.stop(`received ${sig}`);
      handlers.set(sig, h);
      Deno.addSignalListener(sig, h);
    }
    if (parent) {
      unwatch = watchParent(parent, () => {
        void ep.stop(`its parent process ${parent.pid} exited (--die-with-parent)`);
      });
    }
    const broker = ep.state === "disconnected" ? "unreachable" : "connected";
    if (config.metrics_port !== null) {
      metrics = await serveMetricsOf(name, ep, config);
    }
    console.log(
      JSON.stringify({
        event: "started",
        endpoint_id: ep.id,
        name,
        pid: Deno.pid,
        broker,
        ...(metrics ? { metrics: `${metrics.address}/metrics` } : {}),
      }),
    );
    if (foreground) {
      console.error(`Starting endpoint; registered ID: ${ep.id}`);
      console.error(workersLine(config));
    }
    if (foreground && broker === "unreachable") console.error(BROKER_WAIT_NOTE);
    const end = await ep.ended;
    if (end.kind === "stopped") {
      console.error(`Endpoint "${name}" stopped: ${end.reason}`);
      return EXIT.OK;
    }
    console.error(`Endpoint "${name}" failed: ${end.error.message}`);
    return exitCodeOf(end.error);
  } finally {
    await metrics?.close();
    unwatch();
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    await releasePidFile(dir);
  }
}

/**
 * The engine of a multi-user endpoint; its mapping, template or schema with a bad field is exit
 * 65 naming the file and the field.
 */
async function startMultiUserEngine(
  name: string,
  dir: string,
  config: EndpointConfig,
): Promise<MultiUserEngine> {
  if (Deno.uid() !== 0) {
    console.error(
      `Endpoint "${name}" is multi-user but runs as uid ${Deno.uid()}, not root: it can only ` +
        "start user endpoints for its own account",
    );
  }
  // Loaded only here: a single-user daemon does not carry the multi-user code.
  const { MultiUserEngine } = await import("../endpoint/user_endpoints.ts");
  try {
    return await MultiUserEngine.start({ config, endpointDir: dir });
  } catch (err) {
    if (err instanceof ConfigError) {
      throw new CliExit(EXIT.DATAERR, `Cannot start endpoint "${name}": ${err.message}`);
    }
    throw err;
  }
}

/** The daemon's metrics listener; a port it cannot bind stops the endpoint (exit 1). */
async function serveMetricsOf(
  name: string,
  ep: Endpoint,
  config: EndpointConfig,
): Promise<MetricsServer> {
  try {
    return await serveEndpointMetrics(ep, {
      hostname: config.metrics_address,
      port: config.metrics_port ?? 0,
    });
  } catch (err) {
    await ep.stop("its metrics port could not be opened");
    throw new CliExit(EXIT.ERROR, `Cannot start endpoint "${name}": ${(err as Error).message}`);
  }
}

/** Parses `--parent pid:ticks`. */
function parseParent(text: string | undefined): ProcessIdentity | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+):(\d+)$/.exec(text);
  if (!m) throw new CliExit(EXIT.ERROR, `Invalid --parent "${text}": expected PID:TICKS`);
  return { pid: Number(m[1]), startTicks: m[2]! };
}

function exitCodeOf(err: Error): number {
  if (err instanceof EndpointRefused) return EXIT.UNAVAILABLE;
  if (err instanceof BrokerUnreachable) return EXIT.TEMPFAIL;
  return EXIT.ERROR;
}
