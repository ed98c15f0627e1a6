/**
 * A private PostgreSQL node for tests and the dev stack. Each {@linkcode PostgresNode} is a
 * cluster of its own: `initdb` into a temporary directory, a random 127.0.0.1 port, its Unix
 * socket inside that directory, trust authentication for a superuser `funcx`, and no durability
 * (`fsync=off`, `synchronous_commit=off`): a test database never has to survive a crash. Tests
 * get a database each from {@linkcode PostgresNode.createDatabase}, so parallel test files never
 * see each other's tables.
 *
 * As with the RabbitMQ node (`rabbitmq.ts`), the server runs under a small shell supervisor in
 * a session of its own, and a watcher in that tree reads the supervisor's stdin, a pipe only this
 * process holds: when this process dies in any way, even by SIGKILL, the watcher sees EOF, takes
 * the node down and removes its directory. As root, the server runs as the `postgres` user
 * (PostgreSQL refuses to run as root), in a directory owned by it.
 *
 * @module
 */
import postgres from "postgres";
import { join } from "node:path";
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

const LIB_DIR = "/usr/lib/postgresql";
const ADMIN_USER = "funcx";
const SERVICE_USER = "postgres";
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const START_ATTEMPTS = 3;

/**
 * The supervisor (`sh -c`). Args: `$0` a label naming the node, `$1` the server's bin directory,
 * `$2` its port, then the command prefix that drops to the `postgres` user (empty when not
 * root). `initdb` runs inside the tree too, so a node killed while it initializes leaves nothing.
 * SIGINT is PostgreSQL's fast shutdown: clients are disconnected, nothing waits for them. The
 * supervisor ignores it, so it lives to reap the server (a server reaped by init instead lingers
 * as a zombie in the group the watcher waits on).
 */
const SUPERVISOR = `
trap '' INT
log="$FUNCX_POSTGRES_DIR/server.log"
: >>"$log"
if [ "$FUNCX_POSTGRES_VERBOSE" = 1 ]; then tail -n +1 -f "$log" >&2 </dev/null & fi
# Background jobs get /dev/null as stdin unless redirected, so hand ours over through fd 3.
exec >>"$log" 2>&1 3<&0
setsid sh -c 'cat >/dev/null
  kill -INT "-$1" 2>/dev/null
  n=0
  while kill -0 "-$1" 2>/dev/null && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "-$1" 2>/dev/null
  rm -rf -- "$FUNCX_POSTGRES_DIR"' "$0-watcher" "$$" <&3 3<&- &
exec 3<&-
bin=$1
port=$2
shift 2
data="$FUNCX_POSTGRES_DIR/data"
if ! "$@" "$bin/initdb" -D "$data" -U ${ADMIN_USER} --auth=trust --no-sync --no-instructions \\
  --encoding=UTF8 --locale=C.UTF-8 </dev/null; then
  echo "initdb failed"
  exit 1
fi
"$@" "$bin/postgres" -D "$data" -p "$port" -k "$FUNCX_POSTGRES_DIR/socket" \\
  -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \\
  -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB \\
  -c "cluster_name=$FUNCX_POSTGRES" </dev/null &
wait "$!"
code=$?
echo "postgres exited with code $code"
trap '' TERM
kill -TERM 0
exit "$code"
`;

/** Where a started node listens and how to log in. */
export interface PostgresInfo {
  /** TCP port on 127.0.0.1. */
  port: number;
  /** `postgres://funcx@127.0.0.1:<port>/postgres`: the superuser on the maintenance database. */
  url: string;
  /** Superuser (trust authentication: no password). */
  adminUser: string;
  /** Directory of the node's Unix socket. */
  socketDir: string;
  /** `funcx-pg-<random>`: the cluster name; also tags every process of the node. */
  name: string;
  /** Temporary directory holding the cluster (`data/`), the socket and `server.log`. */
  dir: string;
}

/** Options of {@linkcode PostgresNode.start}. */
export interface StartPostgresOptions {
  /** Copy the server's output to this process's stderr. @default false */
  verbose?: boolean;
  /** Aborts start-up; the half-started node is stopped. @default undefined */
  signal?: AbortSignal;
}

/** Lifecycle of a {@linkcode PostgresNode}. */
export type PostgresState = "starting" | "running" | "stopping" | "stopped";

/**
 * A private PostgreSQL node, running until {@linkcode stop}.
 *
 * @example
 * ```ts
 * await using node = await PostgresNode.start();
 * const url = await node.createDatabase();
 * ```
 */
export class PostgresNode implements AsyncDisposable {
  /** Port, URL and directories of the node. */
  readonly info: PostgresInfo;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #exit: Deno.CommandStatus | undefined;
  #state: PostgresState = "starting";
  #stopping: Promise<void> | undefined;

  private constructor(info: PostgresInfo, child: Deno.ChildProcess) {
    this.info = info;
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    void child.status.then((s) => this.#exit = s);
    // A forgotten node must not keep this process alive; the watcher stops it when we exit.
    child.unref();
  }

  /**
   * Initializes and starts a node; resolves once it accepts a login (about 1 s). Rejects after
   * 60 s with the tail of the server's log.
   */
  static async start(options: StartPostgresOptions = {}): Promise<PostgresNode> {
    const bin = await findBinDir();
    if (bin === undefined) {
      throw new Error(`Cannot start PostgreSQL: the "postgresql" package is not installed`);
    }
    for (let attempt = 1;; attempt++) {
      options.signal?.throwIfAborted();
      const node = await PostgresNode.#launch(bin, options.verbose ?? false);
      try {
        await node.#waitReady(options.signal);
        node.#state = "running";
        return node;
      } catch (err) {
        await node.stop();
        // The free port is picked before the server binds it, so another process can win.
        if (attempt < START_ATTEMPTS && err instanceof PortTaken) continue;
        throw err;
      }
    }
  }

  static async #launch(bin: string, verbose: boolean): Promise<PostgresNode> {
    const [port] = freePorts(1) as [number];
    const name = `funcx-pg-${randomHex(12)}`;
    const dir = await Deno.makeTempDir({ prefix: "funcx-postgres-" });
    const socketDir = join(dir, "socket");
    await Deno.mkdir(socketDir);
    let dropPrivileges: string[] = [];
    if (Deno.uid() === 0) {
      await run("chown", ["-R", `${SERVICE_USER}:${SERVICE_USER}`, dir]);
      dropPrivileges = [
        "setpriv",
        `--reuid=${SERVICE_USER}`,
        `--regid=${SERVICE_USER}`,
        "--init-groups",
      ];
    }
    const child = new Deno.Command("setsid", {
      args: [
        "sh",
        "-c",
        SUPERVISOR,
        `funcx-postgres:${name}`,
        bin,
        String(port),
        ...dropPrivileges,
      ],
      cwd: dir,
      env: {
        PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${Deno.env.get("PATH") ?? ""}`,
        LANG: "C.UTF-8",
        LC_ALL: "C.UTF-8",
        FUNCX_POSTGRES: name,
        FUNCX_POSTGRES_DIR: dir,
        FUNCX_POSTGRES_VERBOSE: verbose ? "1" : "0",
      },
      clearEnv: true,
      stdin: "piped",
      stdout: "null",
      stderr: verbose ? "inherit" : "null",
    }).spawn();
    const url = `postgres://${ADMIN_USER}@127.0.0.1:${port}/postgres`;
    return new PostgresNode({ port, url, adminUser: ADMIN_USER, socketDir, name, dir }, child);
  }

  /** Where the node is in its life. */
  get state(): PostgresState {
    return this.#state;
  }

  /**
   * Creates a database (a random `t_<hex>` name when none is given) and returns its URL. An
   * existing database of that name is an error.
   */
  async createDatabase(name: string = `t_${randomHex(16)}`): Promise<string> {
    return await createDatabase(this.info.url, name);
  }

  /** Drops a database, disconnecting its clients; a missing database is not an error. */
  async dropDatabase(name: string): Promise<void> {
    await dropDatabase(this.info.url, name);
  }

  /**
   * Stops the node: fast shutdown (clients are disconnected), SIGKILL to what is left after 5 s,
   * then removes its directory. Idempotent; resolves once no process of the node remains.
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
    this.#state = "stopping";
    this.#child.ref();
    // The group id is ours only while its leader lives; after that the marker scan finds all.
    const group = (sig: Deno.Signal) => this.#exit === undefined && signal(-this.#child.pid, sig);
    group("SIGINT");
    // Closing stdin also wakes the watcher, which does the same from inside the tree.
    await this.#stdin.close().catch(() => {});
    const marker = this.info.name;
    const deadline = Date.now() + STOP_GRACE_MS;
    while ((await nodePids(marker)).length > 0 && Date.now() < deadline) await delay(50);
    group("SIGKILL");
    for (const pid of await nodePids(marker)) signal(pid, "SIGKILL");
    await this.#child.status;
    for (let i = 0; i < 50 && (await nodePids(marker)).length > 0; i++) await delay(100);
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
      const taken = /could not bind|address already in use/i.test(log);
      const problem = taken
        ? "found its port taken"
        : this.#exit !== undefined
        ? "stopped before it was ready"
        : Date.now() > deadline
        ? `was not ready after ${READY_TIMEOUT_MS} ms (last probe: ${String(last)})`
        : undefined;
      if (problem !== undefined) {
        const message = `PostgreSQL node "${this.info.name}" ${problem}; server log:\n`;
        throw new (taken ? PortTaken : Error)(message + logTail(log), { cause: last });
      }
      // Probe only once the server says so: a login attempt during start-up is just noise.
      if (log.includes("ready to accept connections")) {
        try {
          await query(this.info.url, (sql) => sql`SELECT 1`);
          return;
        } catch (err) {
          last = err;
        }
      }
      const options = abort ? { signal: abort } : {};
      await delay(50, undefined, options).catch(() => abort?.throwIfAborted());
    }
  }

  async #log(): Promise<string> {
    return await Deno.readTextFile(join(this.info.dir, "server.log")).catch(() => "");
  }
}

/** Runs `fn` on a short-lived single connection to `url`. */
async function query<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {}, prepare: false });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Creates database `name` through the maintenance URL `adminUrl`; returns the new one's URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw new TypeError(`Invalid database name "${name}": use lower-case letters, digits and _`);
  }
  await query(adminUrl, (sql) => sql`CREATE DATABASE ${sql(name)}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Drops database `name` through `adminUrl`, disconnecting its clients; missing is fine. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await query(adminUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`);
}

/** Processes of node `name` (their environment carries `FUNCX_POSTGRES=<name>`). */
export function nodePids(name: string): Promise<number[]> {
  return markedPids(`FUNCX_POSTGRES=${name}`);
}

/** The last lines of the server's log. */
function logTail(log: string): string {
  return log.trimEnd().split("\n").slice(-25).join("\n");
}

/**
 * Ensures PostgreSQL's server programs are installed. As root, installs the Debian package
 * `postgresql` with apt-get (progress on stderr); otherwise throws an error that says what to
 * install.
 */
export async function ensurePostgresInstalled(): Promise<void> {
  if (await findBinDir() !== undefined) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      `Cannot find PostgreSQL's "initdb" and "postgres" under ${LIB_DIR}/<version>/bin: ` +
        `install them with "sudo apt-get install postgresql"`,
    );
  }
  console.error("PostgreSQL is not installed; installing the postgresql package with apt-get");
  await aptInstall(["postgresql"]);
  if (await findBinDir() === undefined) {
    throw new Error(`Cannot find PostgreSQL under ${LIB_DIR} after installing "postgresql"`);
  }
}

/** Debian's newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `postgres`. */
async function findBinDir(): Promise<string | undefined> {
  const versions: number[] = [];
  try {
    for await (const e of Deno.readDir(LIB_DIR)) {
      if (/^\d+$/.test(e.name)) versions.push(Number(e.name));
    }
  } catch {
    return undefined;
  }
  for (const v of versions.sort((a, b) => b - a)) {
    const bin = join(LIB_DIR, String(v), "bin");
    if (await isFile(join(bin, "initdb")) && await isFile(join(bin, "postgres"))) return bin;
  }
  return undefined;
}

let shared: Promise<string> | undefined;

/**
 * The maintenance URL of the test run's PostgreSQL node: `FUNCX_TEST_POSTGRES_URL` when the test
 * runner started one, else a private node started now and stopped when this process exits.
 */
export function sharedPostgres(): Promise<string> {
  shared ??= (async () => {
    const url = Deno.env.get("FUNCX_TEST_POSTGRES_URL");
    if (url) return url;
    await ensurePostgresInstalled();
    const node = await PostgresNode.start();
    globalThis.addEventListener("unload", () => void node.stop());
    return node.info.url;
  })();
  return shared;
}

/** A database of its own for one test; disposing of it drops it. */
export interface TestDatabase extends AsyncDisposable {
  /** `postgres://funcx@127.0.0.1:<port>/<name>`. */
  url: string;
  name: string;
  /** Drops the database, disconnecting its clients; idempotent. */
  drop(): Promise<void>;
}

/** Creates a database with a random name on {@linkcode sharedPostgres}. */
export async function testDatabase(): Promise<TestDatabase> {
  const admin = await sharedPostgres();
  const name = `t_${randomHex(16)}`;
  const url = await createDatabase(admin, name);
  const drop = () => dropDatabase(admin, name);
  return { url, name, drop, [Symbol.asyncDispose]: drop };
}
