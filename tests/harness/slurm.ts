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
import { freePorts, output, randomHex } from "./_os.ts";
import { ask, ensureInstalled, quietly, startRetrying, Supervisor } from "./_scheduler_cell.ts";

const SLURM = {
  name: "Slurm",
  packages: ["slurmctld", "slurmd", "slurm-client", "munge"],
  programs: ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged"],
};
const MARKER = "FUNCX_SLURM_CLUSTER";
const LOGS = ["supervisor.log", "log/munged.log", "log/slurmctld.log", "log/slurmd.log"];

/**
 * The daemons under the supervisor: munged, then the two Slurm daemons in the foreground. The
 * watcher kills the descendants of every process carrying the marker (jobs live in sessions of
 * their own under slurmstepd), then the marked processes, then removes the directory.
 */
const DAEMONS = `
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
  await ensureInstalled(SLURM);
}

/**
 * Starts a one-node cluster (munge auth, partition `debug`) and resolves once its node is idle.
 * Needs root (the daemons run as `SlurmUser=root`).
 */
export async function startSlurmCluster(options: StartSlurmOptions = {}): Promise<SlurmCluster> {
  await ensureSlurmInstalled();
  if (Deno.uid() !== 0) throw new Error("Cannot start a private Slurm cluster: needs root");
  return await startRetrying(() => Cluster.launch(options));
}

class Cluster implements SlurmCluster {
  readonly info: SlurmClusterInfo;
  readonly env: Record<string, string>;
  readonly #daemons: Supervisor;

  private constructor(info: SlurmClusterInfo, daemons: Supervisor) {
    this.info = info;
    this.env = { SLURM_CONF: info.conf };
    this.#daemons = daemons;
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
    const daemons = Supervisor.spawn({
      daemons: DAEMONS,
      name: "Slurm",
      label: `funcx-slurm:${clusterName}`,
      dir,
      marker: `${MARKER}=${clusterName}`,
      env: { NODE: node, SLURM_CONF: conf },
    });
    const info = {
      ...{ dir, conf, clusterName, node, partition: "debug", cpus, slurmctldPort, slurmdPort },
      mungeSocket,
      startMs: 0,
    };
    return new Cluster(info, daemons);
  }

  async waitReady(): Promise<void> {
    this.info.startMs = await this.#daemons.waitReady({
      name: `Slurm cluster "${this.info.clusterName}"`,
      probeName: "sinfo",
      portTaken: /address already in use/i,
      logFiles: () => Promise.resolve(LOGS),
      probe: async () => {
        const { ok, text } = await ask("sinfo", ["-h", "-N", "-o", "%T"], this.env);
        return { ready: ok && /^idle/m.test(text), said: text };
      },
    });
  }

  /** Cancels every job, kills the daemons and job processes, removes the directory. */
  stop(): Promise<void> {
    // Jobs first, so slurmstepd ends its job processes the normal way.
    const args = ["--full", "--quiet", `--cluster=${this.info.clusterName}`, "-u", "root"];
    return this.#daemons.stop(() => quietly("scancel", args, this.env));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
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

async function memTotalMb(): Promise<number> {
  const text = await Deno.readTextFile("/proc/meminfo");
  const kb = Number(/^MemTotal:\s+(\d+)/m.exec(text)?.[1] ?? 4_000_000);
  return Math.floor(kb / 1024);
}
