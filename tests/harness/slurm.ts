/**
 * A private one-node Slurm cluster for the Slurm provider's tests: its own `munged` (own socket
 * and key), `slurmctld` and `slurmd` on random 127.0.0.1 ports, with state, spool, logs and
 * `slurm.conf` in a temporary directory, so it never touches `/etc/slurm` or a system cluster
 * and several can run at once. Clients (`sbatch`, `squeue`, `scancel`, `sinfo`) reach it through
 * `SLURM_CONF` (see {@linkcode SlurmCluster.env}). Starting takes about a second.
 *
 * Robustness follows the RabbitMQ harness: the daemons run under a shell supervisor in a session
 * of its own, and a watcher reading a pipe only this process holds takes the daemons, every job
 * process below them and the directory down when this process dies in any way.
 *
 * @module
 */
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import {
  aptInstall,
  descendantsOf,
  freePorts,
  markedPids,
  missingPrograms,
  PortTaken,
  randomHex,
  signal,
  TREE_WATCHER,
} from "./_os.ts";

const PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"];
const PROGRAMS = ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged"];
const READY_TIMEOUT_MS = 60_000;
const START_ATTEMPTS = 3;
const MARKER = "FUNCX_SLURM_CLUSTER";

/**
 * The supervisor (`bash -c`, for `wait -n`); `$0` is a label. It starts munged, then the two Slurm daemons in
 * the foreground, and ends the group when one of them exits. The watcher kills the descendants
 * of every process carrying the marker (jobs live in sessions of their own under slurmstepd),
 * then the marked processes, then removes the directory.
 */
const SUPERVISOR = `
exec >>"$D/supervisor.log" 2>&1 3<&0
${TREE_WATCHER}
exec 3<&-
env "$MARK" munged -F --force --socket="$D/munge/socket" --key-file="$D/munge/munge.key" \\
  --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" \\
  --seed-file="$D/munge/munged.seed" </dev/null &
n=0
until [ -S "$D/munge/socket" ]; do
  n=$((n + 1)); [ "$n" -gt 100 ] && { echo "munged did not start"; kill -TERM 0; }
  sleep 0.05
done
env "$MARK" slurmctld -D -c -f "$D/slurm.conf" </dev/null &
env "$MARK" slurmd -D -c -N "$NODE" -f "$D/slurm.conf" </dev/null &
wait -n
echo "a Slurm daemon exited with code $?"
trap "" TERM
kill -TERM 0
wait
`;

/** A running one-node cluster. */
export interface SlurmClusterInfo {
  /** The temporary directory (config, state, spool, logs, munge key and socket). */
  dir: string;
  /** Path of the generated `slurm.conf`. */
  conf: string;
  /** `ClusterName`. */
  clusterName: string;
  /** The one node (`hostname -s`). */
  node: string;
  /** The default partition, `debug`. */
  partition: string;
  /** CPUs of the node. */
  cpus: number;
  /** `SlurmctldPort`. */
  slurmctldPort: number;
  /** `SlurmdPort`. */
  slurmdPort: number;
  /** The munge socket (`AuthInfo=socket=...`). */
  mungeSocket: string;
  /** Milliseconds from launch until the node was idle. */
  startMs: number;
}

/** A private cluster, until {@linkcode SlurmCluster.stop}. */
export interface SlurmCluster extends AsyncDisposable {
  /** Paths and ports. */
  readonly info: SlurmClusterInfo;
  /** Environment for Slurm clients: `SLURM_CONF`. */
  readonly env: Record<string, string>;
  /** Cancels every job, kills the daemons and job processes, removes the directory. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startSlurmCluster}. */
export interface StartSlurmOptions {
  /** Memory of the node in MB. @default 80 % of this machine's, at most 16 GB */
  realMemoryMb?: number;
  /** Extra `slurm.conf` lines. @default [] */
  extraConf?: string[];
}

/**
 * Ensures the Slurm daemons, clients and munge are installed. As root, installs the Debian
 * packages with apt-get (progress on stderr); otherwise throws an error that says what to install.
 */
export async function ensureSlurmInstalled(): Promise<void> {
  if ((await missingPrograms(PROGRAMS)).length === 0) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      `Cannot find ${
        (await missingPrograms(PROGRAMS)).map((p) => `"${p}"`).join(", ")
      }: install them ` +
        `with "sudo apt-get install ${PACKAGES.join(" ")}"`,
    );
  }
  console.error(`Slurm is not installed; installing ${PACKAGES.join(" ")} with apt-get`);
  await aptInstall(PACKAGES);
  const still = await missingPrograms(PROGRAMS);
  if (still.length > 0) {
    throw new Error(`Cannot find "${still.join('", "')}" after installing ${PACKAGES.join(" ")}`);
  }
}

/**
 * Starts a one-node cluster (munge auth, partition `debug`) and resolves once its node is idle.
 * Needs root (the daemons run as `SlurmUser=root`).
 */
export async function startSlurmCluster(options: StartSlurmOptions = {}): Promise<SlurmCluster> {
  await ensureSlurmInstalled();
  if (Deno.uid() !== 0) throw new Error("Cannot start a private Slurm cluster: needs root");
  for (let attempt = 1;; attempt++) {
    const cluster = await Cluster.launch(options);
    try {
      await cluster.waitReady();
      return cluster;
    } catch (err) {
      await cluster.stop();
      if (attempt < START_ATTEMPTS && err instanceof PortTaken) continue;
      throw err;
    }
  }
}

class Cluster implements SlurmCluster {
  readonly info: SlurmClusterInfo;
  readonly env: Record<string, string>;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #marker: string;
  readonly #started = performance.now();
  #exit: Deno.CommandStatus | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(info: SlurmClusterInfo, marker: string, child: Deno.ChildProcess) {
    this.info = info;
    this.env = { SLURM_CONF: info.conf };
    this.#marker = marker;
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    void child.status.then((s) => this.#exit = s);
    child.unref();
  }

  static async launch(options: StartSlurmOptions): Promise<Cluster> {
    const [slurmctldPort, slurmdPort] = freePorts(2) as [number, number];
    const id = randomHex(8);
    const clusterName = `funcx${id}`;
    const dir = await Deno.makeTempDir({ prefix: "funcx-slurm-" });
    await Deno.chmod(dir, 0o755); // job processes (any user) read slurm.conf
    for (const sub of ["state", "spool", "log", "munge"]) await Deno.mkdir(join(dir, sub));
    await Deno.chmod(join(dir, "munge"), 0o755);
    const key = new Uint8Array(1024);
    crypto.getRandomValues(key);
    await Deno.writeFile(join(dir, "munge", "munge.key"), key, { mode: 0o600 });
    const node = (await output("hostname", ["-s"])).trim();
    const cpus = navigator.hardwareConcurrency;
    const memMb = options.realMemoryMb ?? Math.min(16_000, Math.floor(await memTotalMb() * 0.8));
    const mungeSocket = join(dir, "munge", "socket");
    const conf = join(dir, "slurm.conf");
    await Deno.writeTextFile(
      conf,
      [
        `ClusterName=${clusterName}`,
        `SlurmctldHost=${node}(127.0.0.1)`,
        `SlurmctldPort=${slurmctldPort}`,
        `SlurmdPort=${slurmdPort}`,
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        `AuthInfo=socket=${mungeSocket}`,
        `StateSaveLocation=${join(dir, "state")}`,
        `SlurmdSpoolDir=${join(dir, "spool")}`,
        `SlurmctldPidFile=${join(dir, "slurmctld.pid")}`,
        `SlurmdPidFile=${join(dir, "slurmd.pid")}`,
        `SlurmctldLogFile=${join(dir, "log", "slurmctld.log")}`,
        `SlurmdLogFile=${join(dir, "log", "slurmd.log")}`,
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "MinJobAge=300",
        "KillWait=5",
        "MessageTimeout=10",
        `NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memMb} State=UNKNOWN`,
        // Jobs share the node's cores (more blocks than cores in the tests).
        `PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8`,
        ...(options.extraConf ?? []),
        "",
      ].join("\n"),
    );
    const marker = `${MARKER}=${clusterName}`;
    const child = new Deno.Command("setsid", {
      args: ["bash", "-c", SUPERVISOR, `funcx-slurm:${clusterName}`],
      cwd: dir,
      env: {
        PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${Deno.env.get("PATH") ?? ""}`,
        LANG: "C.UTF-8",
        D: dir,
        NODE: node,
        MARK: marker,
        SLURM_CONF: conf,
      },
      clearEnv: true,
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const info = {
      ...{ dir, conf, clusterName, node, partition: "debug", cpus, slurmctldPort, slurmdPort },
      mungeSocket,
      startMs: 0,
    };
    return new Cluster(info, marker, child);
  }

  async waitReady(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = "";
    for (;;) {
      const logs = await this.#logs();
      const taken = /address already in use/i.test(logs);
      const problem = taken
        ? "found one of its ports taken"
        : this.#exit !== undefined
        ? "stopped before it was ready"
        : Date.now() > deadline
        ? `was not ready after ${READY_TIMEOUT_MS} ms (last sinfo: ${last})`
        : undefined;
      if (problem !== undefined) {
        const message = `Slurm cluster "${this.info.clusterName}" ${problem}; logs:\n${logs}`;
        throw new (taken ? PortTaken : Error)(message);
      }
      const sinfo = await new Deno.Command("sinfo", {
        args: ["-h", "-N", "-o", "%T"],
        env: this.env,
        stdin: "null",
      }).output().catch(() => undefined);
      last = sinfo ? new TextDecoder().decode(sinfo.code === 0 ? sinfo.stdout : sinfo.stderr) : "";
      if (sinfo?.code === 0 && /^idle/m.test(last)) {
        this.info.startMs = Math.round(performance.now() - this.#started);
        return;
      }
      await delay(100);
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #stop(): Promise<void> {
    this.#child.ref();
    // Jobs first, so slurmstepd ends its job processes the normal way.
    if (this.#exit === undefined) {
      await new Deno.Command("scancel", {
        args: ["--full", "--quiet", `--cluster=${this.info.clusterName}`, "-u", "root"],
        env: this.env,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output().catch(() => {});
    }
    // Job processes first (SIGKILL), then the daemons (SIGTERM) so that the supervisor reaps
    // them, then whatever is left.
    const sweep = async (jobsOnly: boolean) => {
      for (let i = 0; i < 3; i++) {
        const marked = await markedPids(this.#marker);
        const skip = new Set(jobsOnly ? marked : []);
        const pids = descendantsOf(marked).filter((p) => !skip.has(p));
        for (const pid of pids) signal(pid, "SIGKILL");
        if (pids.length === 0) return;
        await delay(100);
      }
    };
    await sweep(true);
    for (const pid of await markedPids(this.#marker)) signal(pid, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#child.status, new Promise((r) => timer = setTimeout(r, 5_000))]);
    clearTimeout(timer);
    await sweep(false);
    await this.#stdin.close().catch(() => {});
    await this.#child.status;
    for (let i = 0; i < 50 && (await markedPids(this.#marker)).length > 0; i++) await delay(100);
    await Deno.remove(this.info.dir, { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }

  async #logs(): Promise<string> {
    const parts: string[] = [];
    for (const f of ["supervisor.log", "log/munged.log", "log/slurmctld.log", "log/slurmd.log"]) {
      const text = await Deno.readTextFile(join(this.info.dir, f)).catch(() => "");
      if (text) parts.push(`--- ${f}\n${text.trimEnd().split("\n").slice(-15).join("\n")}`);
    }
    return parts.join("\n");
  }
}

let shared: Promise<Record<string, string>> | undefined;

/**
 * The test run's cluster as client environment (`SLURM_CONF`): from `FUNCX_TEST_SLURM_CONF`
 * when the test runner started one (see {@linkcode ensureSlurmCluster}), else a private cluster
 * started now and stopped when this process exits.
 */
export function sharedSlurm(): Promise<Record<string, string>> {
  shared ??= (async () => {
    const conf = Deno.env.get("FUNCX_TEST_SLURM_CONF");
    if (conf) return { SLURM_CONF: conf };
    const cluster = await startSlurmCluster();
    globalThis.addEventListener("unload", () => void cluster.stop());
    return cluster.env;
  })();
  return shared;
}

/**
 * For the test runner: installs Slurm when missing, starts one cluster for the whole run and
 * returns it with the environment to give `deno test` (`FUNCX_TEST_SLURM_CONF`); the runner
 * calls `stop()` at the end (a crash of the runner stops it too).
 */
export async function ensureSlurmCluster(): Promise<
  { cluster: SlurmCluster; env: Record<string, string> }
> {
  const cluster = await startSlurmCluster();
  return { cluster, env: { FUNCX_TEST_SLURM_CONF: cluster.info.conf } };
}

async function output(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  if (out.code !== 0) throw new Error(`Command "${cmd}" exited with code ${out.code}`);
  return new TextDecoder().decode(out.stdout);
}

async function memTotalMb(): Promise<number> {
  const text = await Deno.readTextFile("/proc/meminfo");
  const kb = Number(/^MemTotal:\s+(\d+)/m.exec(text)?.[1] ?? 4_000_000);
  return Math.floor(kb / 1024);
}
