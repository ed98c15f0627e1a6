/**
 * A private RabbitMQ node for tests, the demo and the dev stack. Each {@linkcode RabbitBroker}
 * is a node of its own: random 127.0.0.1 ports, a temporary directory for its database, logs,
 * config and Erlang cookie, and its own `epmd`, so any number of them (parallel test runs, the
 * dev stack beside tests) can run at once without touching `/var/lib/rabbitmq` or each other.
 * The service and endpoints reach it through `info.amqpUrl` or a vhost from `createVhost()`.
 *
 * The node runs under a small shell supervisor in a session of its own. A watcher in that tree
 * reads the supervisor's stdin, a pipe only this process holds, so when this process dies in
 * any way the watcher sees EOF and takes the whole node down and removes its directory.
 *
 * {@linkcode RabbitBroker.stopNode} and {@linkcode RabbitBroker.startNode} stop the node and start
 * it again on the same ports, name and directory, so durable queues and persistent messages
 * survive, as in a broker upgrade; the watchers of earlier runs stay until the final `stop()`.
 *
 * @module
 */
import amqp from "amqplib";
import { dirname, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import {
  aptInstall,
  freePorts,
  isFile,
  markedPids,
  PortTaken,
  randomHex,
  run,
  signal,
} from "./_os.ts";

const LIB_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl";
const ADMIN_USER = "funcx";
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
/** How long a node stopped to be started again may take to shut down by itself. */
const NODE_STOP_GRACE_MS = 30_000;
/** Marks the watcher's processes, which outlive a node stopped by `stopNode()`. */
const WATCHER_MARK = "FUNCX_BROKER_WATCHER=1";
const START_ATTEMPTS = 3;

/**
 * The supervisor (`sh -c`). Args: `$0` a label naming the node, `$1` the server script, then
 * the command prefix that drops to the `rabbitmq` user (empty when not root). The watcher gets
 * a session of its own so that its group kill spares it and it can remove the directory last.
 */
const SUPERVISOR = `
log="$FUNCX_BROKER_DIR/server.log"
: >>"$log"
if [ "$FUNCX_BROKER_VERBOSE" = 1 ]; then tail -n +1 -f "$log" >&2 </dev/null & fi
# Background jobs get /dev/null as stdin unless redirected, so hand ours over through fd 3.
exec >>"$log" 2>&1 3<&0
FUNCX_BROKER_WATCHER=1 setsid sh -c 'cat >/dev/null
  kill -TERM "-$1" 2>/dev/null
  n=0
  while kill -0 "-$1" 2>/dev/null && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "-$1" 2>/dev/null
  rm -rf -- "$FUNCX_BROKER_DIR"' "$0-watcher" "$$" <&3 3<&- &
exec 3<&-
server=$1
shift
# A cluster's nodes share one epmd that the cluster runs; a lone node runs its own.
if [ "$FUNCX_BROKER_SHARED_EPMD" != 1 ]; then
  "$@" epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 </dev/null &
fi
n=0
until epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1; do
  n=$((n + 1))
  if [ "$n" -gt 100 ]; then echo "epmd did not start on port $ERL_EPMD_PORT"; kill -TERM 0; fi
  sleep 0.05
done
"$@" "$server" </dev/null &
wait "$!"
code=$?
echo "rabbitmq-server exited with code $code"
trap 'exit "$code"' TERM
kill -TERM 0
exit "$code"
`;

/** Where a started broker listens and how to log in. */
export interface BrokerInfo {
  /** AMQP port on 127.0.0.1. */
  amqpPort: number;
  /** Management HTTP API port on 127.0.0.1. */
  managementPort: number;
  /** Port of this node's own `epmd` (set `ERL_EPMD_PORT` to it to use `rabbitmqctl`). */
  epmdPort: number;
  /** `amqp://funcx:<password>@127.0.0.1:<port>`, default vhost `/`. */
  amqpUrl: string;
  /** `http://127.0.0.1:<port>`. */
  managementUrl: string;
  /** Administrator user, with full permissions on `/`. */
  adminUser: string;
  /** Random password of the administrator. */
  adminPassword: string;
  /** Erlang node name, `funcx-<random>@localhost`; also tags every process of the node. */
  nodeName: string;
  /** Temporary directory holding the node's database, config, cookie and `server.log`. */
  dir: string;
}

/** Options of {@linkcode RabbitBroker.start}. */
export interface StartBrokerOptions {
  /** Copy the server's output to this process's stderr. @default false */
  verbose?: boolean;
  /** Aborts start-up; the half-started node is stopped. @default undefined */
  signal?: AbortSignal;
  /** Called once the node's process is launched, before it is ready. @default undefined */
  onLaunch?: (info: BrokerInfo) => void;
  /**
   * Makes the node ready to join a private cluster: the cluster's Erlang cookie and admin
   * password, and the port of the one `epmd` the cluster runs (the node starts none of its own).
   * @default undefined: a lone node with its own cookie, password and epmd
   */
  cluster?: ClusterSecrets;
}

/** What the nodes of one private cluster share (see `rabbitmq_cluster.ts`). */
export interface ClusterSecrets {
  /** The Erlang cookie of every node. */
  cookie: string;
  /** The administrator's password on every node. */
  adminPassword: string;
  /** The port of the cluster's `epmd`, already running. */
  epmdPort: number;
}

/**
 * Lifecycle of a {@linkcode RabbitBroker}; `"down"` is a node stopped by `stopNode()` that keeps
 * its directory and ports for `startNode()`.
 */
export type BrokerState = "starting" | "running" | "down" | "stopping" | "stopped";

/** Options of {@linkcode RabbitBroker.stopNode}. */
export interface StopNodeOptions {
  /**
   * SIGKILL the node at once, as a crash would (what the broker confirmed to publishers is on
   * disk and survives; acknowledgements may not). @default false: SIGTERM, and the node shuts
   * down by itself (SIGKILL only after 30 s)
   */
  kill?: boolean;
}

/** Options of {@linkcode RabbitBroker.restart}. */
export interface RestartOptions extends StopNodeOptions {
  /** Time the node stays down between stopping and starting. @default 0 */
  downMs?: number;
  /** Aborts the start; the node stays down. @default undefined */
  signal?: AbortSignal;
}

/**
 * A private RabbitMQ node with the management plugin, running until {@linkcode stop}.
 *
 * @example
 * ```ts
 * await using broker = await RabbitBroker.start();
 * const url = await broker.createVhost("test-1");
 * ```
 */
export class RabbitBroker implements AsyncDisposable {
  /** Ports, URLs and credentials of the node. */
  readonly info: BrokerInfo;
  readonly #launch: Launch;
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  /** Stdins of the supervisors of earlier runs: their watchers remove the directory on EOF. */
  readonly #retired: WritableStreamDefaultWriter<Uint8Array>[] = [];
  #exit: Deno.CommandStatus | undefined;
  #state: BrokerState = "starting";
  #stopping: Promise<void> | undefined;

  private constructor(info: BrokerInfo, launch: Launch) {
    this.info = info;
    this.#launch = launch;
    this.#child = launch.spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#watchExit();
  }

  #watchExit(): void {
    const child = this.#child;
    this.#exit = undefined;
    void child.status.then((s) => {
      if (this.#child === child) this.#exit = s;
    });
    // A forgotten node must not keep this process alive; the watcher stops it when we exit.
    child.unref();
  }

  /**
   * Starts a node and resolves once its management API answers and its AMQP port accepts a
   * login (about 5 s). Rejects after 60 s with the tail of the server's log.
   */
  static async start(options: StartBrokerOptions = {}): Promise<RabbitBroker> {
    const verbose = options.verbose ?? false;
    const server = await findServerScript();
    if (server === undefined) {
      throw new Error(`Cannot start RabbitMQ: "rabbitmq-server" is not installed`);
    }
    for (let attempt = 1;; attempt++) {
      options.signal?.throwIfAborted();
      const broker = await RabbitBroker.#prepare(server, verbose, options.cluster);
      try {
        options.onLaunch?.(broker.info);
        await broker.#waitReady(options.signal);
        broker.#state = "running";
        return broker;
      } catch (err) {
        await broker.stop();
        // Free ports are picked before the node binds them, so another process can win the race.
        if (attempt < START_ATTEMPTS && err instanceof PortTaken) continue;
        throw err;
      }
    }
  }

  static async #prepare(
    server: string,
    verbose: boolean,
    cluster: ClusterSecrets | undefined,
  ): Promise<RabbitBroker> {
    const [amqpPort, managementPort, distPort, ownEpmdPort] = freePorts(4) as [
      number,
      number,
      number,
      number,
    ];
    const epmdPort = cluster?.epmdPort ?? ownEpmdPort;
    const nodeName = `funcx-${randomHex(12)}@localhost`;
    const adminPassword = cluster?.adminPassword ?? randomHex(32);
    const dir = await Deno.makeTempDir({ prefix: "funcx-rabbitmq-" });
    const home = join(dir, "home");
    for (const sub of [home, join(dir, "mnesia"), join(dir, "log")]) await Deno.mkdir(sub);
    await Deno.writeTextFile(
      join(dir, "rabbitmq.conf"),
      `listeners.tcp.default = 127.0.0.1:${amqpPort}
management.tcp.ip = 127.0.0.1
management.tcp.port = ${managementPort}
loopback_users = none
default_vhost = /
default_user = ${ADMIN_USER}
default_pass = ${adminPassword}
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
disk_free_limit.absolute = 50MB
log.console = true
log.console.level = info
log.console.use_colors = off
log.file = false
`,
    );
    await Deno.writeTextFile(join(dir, "enabled_plugins"), "[rabbitmq_management].\n");
    await Deno.writeTextFile(join(dir, "rabbitmq-env.conf"), "");
    const cookie = join(home, ".erlang.cookie");
    const cookieText = cluster?.cookie ?? randomHex(20).toUpperCase();
    await Deno.writeTextFile(cookie, cookieText, { mode: 0o400 });
    let dropPrivileges: string[] = [];
    if (Deno.uid() === 0) {
      await run("chown", ["-R", "rabbitmq:rabbitmq", dir]);
      dropPrivileges = ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups"];
    }

    const env: Record<string, string> = {
      PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${Deno.env.get("PATH") ?? ""}`,
      HOME: home,
      LANG: "C.UTF-8",
      FUNCX_BROKER: nodeName,
      FUNCX_BROKER_DIR: dir,
      FUNCX_BROKER_VERBOSE: verbose ? "1" : "0",
      FUNCX_BROKER_SHARED_EPMD: cluster ? "1" : "0",
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_USE_LONGNAME: "false",
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_CONFIG_FILE: join(dir, "rabbitmq.conf"),
      RABBITMQ_CONFIG_FILES: join(dir, "conf.d", "*.conf"),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, "advanced.config"),
      RABBITMQ_CONF_ENV_FILE: join(dir, "rabbitmq-env.conf"),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
      RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
      RABBITMQ_PLUGINS_EXPAND_DIR: join(dir, "mnesia", "plugins-expand"),
      RABBITMQ_LOG_BASE: join(dir, "log"),
      RABBITMQ_PID_FILE: join(dir, "rabbitmq.pid"),
      RABBITMQ_MOTD_FILE: join(dir, "motd"),
      // The node name on the VM's command line lets `pgrep -f <nodeName>` find it.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:
        `-kernel inet_dist_use_interface {127,0,0,1} -funcx_broker ${nodeName}`,
      ERL_EPMD_PORT: String(epmdPort),
      ERL_EPMD_ADDRESS: "127.0.0.1",
      ERL_CRASH_DUMP_SECONDS: "0",
    };
    const spawn = () =>
      new Deno.Command("setsid", {
        args: ["sh", "-c", SUPERVISOR, `funcx-broker:${nodeName}`, server, ...dropPrivileges],
        cwd: dir,
        env,
        clearEnv: true,
        stdin: "piped",
        stdout: "null",
        stderr: verbose ? "inherit" : "null",
      }).spawn();
    const amqpUrl = `amqp://${ADMIN_USER}:${adminPassword}@127.0.0.1:${amqpPort}`;
    const managementUrl = `http://127.0.0.1:${managementPort}`;
    return new RabbitBroker({
      ...{ amqpPort, managementPort, epmdPort, amqpUrl, managementUrl, nodeName, dir },
      ...{ adminUser: ADMIN_USER, adminPassword },
    }, { spawn, cookie: cookieText, env });
  }

  /** Where the node is in its life. */
  get state(): BrokerState {
    return this.#state;
  }

  /**
   * Creates a vhost and gives the admin user full permissions on it; returns its AMQP URL.
   * An existing vhost is kept as it is.
   */
  async createVhost(name: string): Promise<string> {
    if (name === "") throw new TypeError("Cannot create a vhost with an empty name");
    const vhost = encodeURIComponent(name);
    await this.#management("PUT", `vhosts/${vhost}`, `create vhost "${name}"`, { body: {} });
    const rights = { configure: ".*", write: ".*", read: ".*" };
    const what = `grant permissions on vhost "${name}"`;
    await this.#management("PUT", `permissions/${vhost}/${ADMIN_USER}`, what, { body: rights });
    return `${this.info.amqpUrl}/${vhost}`;
  }

  /** Deletes a vhost with everything in it; a missing vhost is not an error. */
  async deleteVhost(name: string): Promise<void> {
    const what = `delete vhost "${name}"`;
    await this.#management("DELETE", `vhosts/${encodeURIComponent(name)}`, what);
  }

  /**
   * Stops the node but keeps its directory (database, config, log) and its ports for
   * {@linkcode startNode}; clients see their connections drop and new ones refused. Resolves
   * once no process of the node is left (the watchers of this object stay until `stop()`).
   */
  async stopNode(options: StopNodeOptions = {}): Promise<void> {
    if (this.#state !== "running") {
      throw new Error(`Cannot stop RabbitMQ node "${this.info.nodeName}": it is ${this.#state}`);
    }
    this.#state = "down";
    this.#child.ref();
    const sig: Deno.Signal = options.kill ? "SIGKILL" : "SIGTERM";
    if (this.#exit === undefined) signal(-this.#child.pid, sig);
    const deadline = Date.now() + (options.kill ? 0 : NODE_STOP_GRACE_MS);
    while ((await this.#nodePids()).length > 0 && Date.now() < deadline) await delay(100);
    if (this.#exit === undefined) signal(-this.#child.pid, "SIGKILL");
    for (const pid of await this.#nodePids()) signal(pid, "SIGKILL");
    await this.#child.status;
    for (let i = 0; i < 50 && (await this.#nodePids()).length > 0; i++) await delay(100);
  }

  /**
   * Starts a node stopped by {@linkcode stopNode} again with the same name, ports and
   * directory, and resolves once it is ready as {@linkcode RabbitBroker.start} does. A failed
   * start leaves it down.
   */
  async startNode(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#state !== "down") {
      throw new Error(`Cannot start RabbitMQ node "${this.info.nodeName}": it is ${this.#state}`);
    }
    this.#retired.push(this.#stdin);
    this.#state = "starting";
    this.#child = this.#launch.spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#watchExit();
    try {
      await this.#waitReady(options.signal);
      this.#state = "running";
    } catch (err) {
      this.#state = "running";
      await this.stopNode({ kill: true });
      throw err;
    }
  }

  /** {@linkcode stopNode}, `downMs` of nothing, then {@linkcode startNode}. */
  async restart(options: RestartOptions = {}): Promise<void> {
    await this.stopNode(options.kill === undefined ? {} : { kill: options.kill });
    if ((options.downMs ?? 0) > 0) {
      const o = options.signal ? { signal: options.signal } : {};
      await delay(options.downMs, undefined, o).catch(() => options.signal?.throwIfAborted());
    }
    await this.startNode(options.signal ? { signal: options.signal } : {});
  }

  /**
   * Runs `rabbitmqctl` against this node (for example `["cluster_status"]`) and returns its
   * output; throws with the output when it fails.
   */
  async rabbitmqctl(args: readonly string[]): Promise<string> {
    const out = await new Deno.Command(CTL, {
      args: ["-n", this.info.nodeName, "--erlang-cookie", this.#launch.cookie, ...args],
      env: this.#launch.env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success) {
      throw new Error(
        `rabbitmqctl ${args.join(" ")} on "${this.info.nodeName}" failed (${out.code}): ` +
          text.trim(),
      );
    }
    return text;
  }

  /** Processes of the running node, without the watchers (which only wait for `stop()`). */
  async #nodePids(): Promise<number[]> {
    const watchers = new Set(await markedPids(WATCHER_MARK));
    return (await markedPids(`FUNCX_BROKER=${this.info.nodeName}`)).filter((p) => !watchers.has(p));
  }

  /**
   * Stops the node: SIGTERM to its processes, SIGKILL to what is left once the AMQP listener is
   * gone (at most 5 s later), then removes its directory. Connected clients see their sockets
   * reset. Idempotent; resolves once no process of the node remains.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** Same as {@linkcode stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #stop(): Promise<void> {
    // A node that never got ready has no clients to part from; its port may even be another's.
    const graceful = this.#state === "running";
    this.#state = "stopping";
    this.#child.ref();
    // The group id is ours only while its leader lives; after that the marker scan finds all.
    const group = (sig: Deno.Signal) => this.#exit === undefined && signal(-this.#child.pid, sig);
    group("SIGTERM");
    // Closing stdin also wakes the watcher, which does the same from inside the tree.
    await this.#stdin.close().catch(() => {});
    for (const stdin of this.#retired.splice(0)) await stdin.close().catch(() => {});
    const nodePids = () => markedPids(`FUNCX_BROKER=${this.info.nodeName}`);
    const deadline = Date.now() + (graceful ? STOP_GRACE_MS : 0);
    while ((await nodePids()).length > 0 && Date.now() < deadline) {
      // On SIGTERM the node closes its listener and drops client connections within
      // milliseconds, then spends ~6 s stopping management stats: not worth waiting for.
      if (!(await portOpen(this.info.amqpPort))) {
        await delay(200);
        break;
      }
      await delay(100);
    }
    group("SIGKILL");
    for (const pid of await nodePids()) signal(pid, "SIGKILL");
    await this.#child.status;
    for (let i = 0; i < 50 && (await nodePids()).length > 0; i++) {
      await delay(100);
    }
    await Deno.remove(this.info.dir, { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
    this.#state = "stopped";
  }

  async #waitReady(abort: AbortSignal | undefined): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last: unknown;
    for (;;) {
      abort?.throwIfAborted();
      const log = await this.#log();
      const taken = /eaddrinuse/i.test(log);
      const problem = taken
        ? "found one of its ports taken"
        : this.#exit !== undefined
        ? "stopped before it was ready"
        : Date.now() > deadline
        ? `was not ready after ${READY_TIMEOUT_MS} ms (last probe: ${String(last)})`
        : undefined;
      if (problem !== undefined) {
        const message = `RabbitMQ node "${this.info.nodeName}" ${problem}; server log:\n`;
        throw new (taken ? PortTaken : Error)(message + logExcerpt(log), { cause: last });
      }
      try {
        await this.#probe(abort);
        return;
      } catch (err) {
        last = err;
      }
      const options = abort ? { signal: abort } : {};
      await delay(100, undefined, options).catch(() => abort?.throwIfAborted());
    }
  }

  async #probe(abort: AbortSignal | undefined): Promise<void> {
    const timeout = AbortSignal.timeout(2_000);
    const signal = abort ? AbortSignal.any([abort, timeout]) : timeout;
    await this.#management("GET", "overview", "read the overview", { signal });
    const conn = await amqp.connect(this.info.amqpUrl, { timeout: 2_000 });
    await conn.close();
  }

  async #management(method: string, path: string, what: string, init: Init = {}): Promise<void> {
    const { body, signal } = init;
    const { adminUser, adminPassword } = this.info;
    const res = await fetch(`${this.info.managementUrl}/api/${path}`, {
      method,
      headers: {
        authorization: `Basic ${btoa(`${adminUser}:${adminPassword}`)}`,
        "content-type": "application/json",
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal === undefined ? {} : { signal }),
    });
    const text = await res.text();
    if (!res.ok && !(method === "DELETE" && res.status === 404)) {
      throw new Error(`Cannot ${what}: management API answered ${res.status} (${text.trim()})`);
    }
  }

  async #log(): Promise<string> {
    return await Deno.readTextFile(join(this.info.dir, "server.log")).catch(() => "");
  }
}

/** The first error lines of the server's log (the cause, usually) and its last lines. */
function logExcerpt(log: string): string {
  const lines = log.trimEnd().split("\n");
  const errors = lines.slice(0, -25).filter((l) => l.includes("[error]")).slice(0, 10);
  return [...errors, ...(errors.length > 0 ? ["[...]"] : []), ...lines.slice(-25)].join("\n");
}

/** How to start the node's supervisor again with the same name, ports and directory. */
interface Launch {
  spawn(): Deno.ChildProcess;
  /** The node's Erlang cookie, for `rabbitmqctl`. */
  cookie: string;
  /** The node's environment, for `rabbitmqctl`. */
  env: Record<string, string>;
}

interface Init {
  body?: unknown;
  signal?: AbortSignal;
}

/**
 * Ensures `rabbitmq-server` is installed. As root, installs the Debian package with apt-get
 * (progress on stderr); otherwise throws an error that says what to install.
 */
export async function ensureRabbitInstalled(): Promise<void> {
  if (await findServerScript() !== undefined) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      `Cannot find "rabbitmq-server": install it with "sudo apt-get install rabbitmq-server"`,
    );
  }
  console.error("RabbitMQ is not installed; installing the rabbitmq-server package with apt-get");
  await aptInstall(["rabbitmq-server"]);
  if (await findServerScript() === undefined) {
    throw new Error(`Cannot find "rabbitmq-server" after installing the "rabbitmq-server" package`);
  }
}

/** The real server script: Debian's `/usr/sbin` wrapper switches user and drops the env. */
async function findServerScript(): Promise<string | undefined> {
  if (await isFile(LIB_SERVER)) return LIB_SERVER;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "")) {
    const real = await Deno.realPath(join(dir, "rabbitmq-server")).catch(() => undefined);
    if (real === undefined) continue;
    if (!real.endsWith("/rabbitmq-script-wrapper")) return real;
    const sibling = join(dirname(real), "rabbitmq-server");
    if (await isFile(sibling)) return sibling;
  }
  return undefined;
}

async function portOpen(port: number): Promise<boolean> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
  conn?.close();
  return conn !== undefined;
}
