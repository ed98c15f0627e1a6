/**
 * A private one-node Grid Engine cell for the Grid Engine provider's tests: its own `SGE_ROOT`
 * (links to Debian's binaries), cell, classic spool, `sge_qmaster` and `sge_execd` on random
 * ports, all in a temporary directory, so it never touches `/var/lib/gridengine`, `/etc` or a
 * system cell and several can run at once. Clients (`qsub`, `qstat`, `qdel`, `qacct`, `qconf`)
 * reach it through {@linkcode GridEngineCell.env}. Starting takes about half a second.
 *
 * Host names: Grid Engine refuses a client whose address resolves back to another name than the
 * one the client gives for itself. On machines whose host name is listed in `/etc/hosts` on
 * 127.0.0.1 after `localhost` (Debian's cloud images), 127.0.0.1 resolves back to `localhost`
 * while clients call themselves by the host name. The cell's own `host_aliases` file (read by
 * the daemons at start) names every such reverse name an alias of the host name, computed here
 * with Grid Engine's own resolver, so nothing outside the cell's directory changes.
 *
 * The cell: one exec host, queue `all.q` (Grid Engine's usual name) with 8 slots (more blocks than cores in the tests),
 * parallel environment `funcx` (`$fill_up`), project `funcx`, jobs of root allowed, a scheduling
 * interval of one second and accounting flushed every second (`qacct` knows a job at once).
 *
 * Robustness follows the Slurm harness: the daemons run under a shell supervisor in a session of
 * its own, and a watcher reading a pipe only this process holds takes the daemons, every job
 * process below them and the directory down when this process dies in any way.
 *
 * @module
 */
import { join } from "node:path";
import { freePorts, output, randomHex } from "./_os.ts";
import { ask, ensureInstalled, quietly, startRetrying, Supervisor } from "./_scheduler_cell.ts";

/** Debian keeps the real binaries here; `/usr/bin/qsub` etc. are wrappers reading `SGE_ROOT`. */
const SGE_BIN = "/usr/lib/gridengine";
const GRID_ENGINE = {
  name: "Grid Engine",
  packages: ["gridengine-master", "gridengine-exec", "gridengine-client"],
  programs: ["sge_qmaster", "sge_execd", "qsub", "qstat", "qdel", "qacct", "qconf"],
  dirs: [SGE_BIN],
};
const MARKER = "FUNCX_GRIDENGINE_CELL";
const CELL = "funcx";
const QUEUE = "all.q";
const PE = "funcx";
const PROJECT = "funcx";
const SLOTS = 8;

/**
 * The daemons under the supervisor: it initialises the classic spool from the templates in
 * `$D/tmpl`, starts the qmaster in the foreground (`SGE_ND`), configures the cell with `qconf`,
 * and starts the execd.
 */
const DAEMONS = `
U=${SGE_BIN}
C="$SGE_ROOT/$SGE_CELL/common"
T="$D/tmpl"
fail() { echo "$1"; kill -TERM 0; exit 1; }
"$U/spoolinit" classic libspoolc "$C;$D/qmaster" init &&
  "$U/spooldefaults" configuration "$T/configuration" &&
  "$U/spooldefaults" complexes /usr/share/gridengine/util/resources/centry &&
  "$U/spooldefaults" usersets /usr/share/gridengine/util/resources/usersets &&
  "$U/spooldefaults" managers root || fail "cannot initialise the spool"
env "$MARK" "$U/sge_qmaster" </dev/null >>"$D/log/qmaster.out" 2>&1 &
qmaster=$!
n=0
until "$U/qconf" -sh >/dev/null 2>&1; do
  kill -0 "$qmaster" 2>/dev/null || fail "sge_qmaster exited"
  n=$((n + 1)); [ "$n" -gt 300 ] && fail "sge_qmaster did not answer"
  sleep 0.1
done
"$U/qconf" -Msconf "$T/scheduler" && "$U/qconf" -Ae "$T/exechost" && "$U/qconf" -as "$HOST" &&
  "$U/qconf" -Ap "$T/pe" && "$U/qconf" -Aprj "$T/project" && "$U/qconf" -Aq "$T/queue" ||
  fail "cannot configure the cell"
env "$MARK" "$U/sge_execd" </dev/null >>"$D/log/execd.out" 2>&1 &
`;

/** A running one-node cell. */
export interface GridEngineCellInfo {
  /** The temporary directory (SGE_ROOT, spools, logs, templates). */
  dir: string;
  /** `SGE_ROOT`. */
  root: string;
  /** `SGE_CELL`. */
  cell: string;
  /** The exec and master host, as Grid Engine names it. */
  host: string;
  /** Names aliased to `host` in the cell's `host_aliases` (e.g. `localhost`). */
  aliases: string[];
  /** The queue, `all.q`. */
  queue: string;
  /** The parallel environment, `funcx` (allocation rule `$fill_up`). */
  pe: string;
  /** The project, `funcx`. */
  project: string;
  /** Slots of the queue on the one host. */
  slots: number;
  /** `SGE_QMASTER_PORT`. */
  qmasterPort: number;
  /** `SGE_EXECD_PORT`. */
  execdPort: number;
  /** Milliseconds from launch until the queue instance was ready. */
  startMs: number;
}

/** A private cell, until {@linkcode GridEngineCell.stop}. */
export interface GridEngineCell extends AsyncDisposable {
  /** Paths and ports. */
  readonly info: GridEngineCellInfo;
  /** Environment for Grid Engine clients: `SGE_ROOT`, `SGE_CELL` and both ports. */
  readonly env: Record<string, string>;
  /** Deletes every job, kills the daemons and job processes, removes the directory. */
  stop(): Promise<void>;
}

/**
 * Ensures the Grid Engine daemons and clients are installed. As root, installs the Debian
 * packages with apt-get (progress on stderr); otherwise throws an error that says what to install.
 */
export async function ensureGridEngineInstalled(): Promise<void> {
  await ensureInstalled(GRID_ENGINE);
}

/**
 * Starts a one-node cell and resolves once its queue instance takes jobs. Needs root (the execd
 * runs jobs as their owners).
 */
export async function startGridEngineCell(): Promise<GridEngineCell> {
  await ensureGridEngineInstalled();
  if (Deno.uid() !== 0) throw new Error("Cannot start a private Grid Engine cell: needs root");
  return await startRetrying(() => Cell.launch());
}

class Cell implements GridEngineCell {
  readonly info: GridEngineCellInfo;
  readonly env: Record<string, string>;
  readonly #daemons: Supervisor;

  private constructor(info: GridEngineCellInfo, daemons: Supervisor) {
    this.info = info;
    this.env = clientEnv(info);
    this.#daemons = daemons;
  }

  static async launch(): Promise<Cell> {
    const [qmasterPort, execdPort] = freePorts(2) as [number, number];
    const id = randomHex(8);
    const dir = await Deno.makeTempDir({ prefix: "funcx-sge-" });
    await Deno.chmod(dir, 0o755); // jobs (any user) read the cell's files
    const root = join(dir, "root");
    const common = join(root, CELL, "common");
    await Deno.mkdir(common, { recursive: true });
    for (const sub of ["qmaster", "execd", "log", "tmpl"]) await Deno.mkdir(join(dir, sub));
    for (const link of ["bin", "utilbin", "util"]) {
      await Deno.symlink(join("/var/lib/gridengine", link), join(root, link));
    }
    const info: GridEngineCellInfo = {
      ...{ dir, root, cell: CELL, host: "", aliases: [], queue: QUEUE, pe: PE, project: PROJECT },
      ...{ slots: SLOTS, qmasterPort, execdPort, startMs: 0 },
    };
    const env = clientEnv(info);
    const { host, aliases } = await hostNames(env);
    Object.assign(info, { host, aliases });
    await Deno.writeTextFile(join(common, "host_aliases"), `${[host, ...aliases].join(" ")}\n`);
    await Deno.writeTextFile(join(common, "act_qmaster"), `${host}\n`);
    await Deno.writeTextFile(join(common, "bootstrap"), bootstrap(dir, common));
    for (const [name, text] of Object.entries(templates(dir, host))) {
      await Deno.writeTextFile(join(dir, "tmpl", name), text);
    }
    const daemons = Supervisor.spawn({
      daemons: DAEMONS,
      name: "Grid Engine",
      label: `funcx-sge:${id}`,
      dir,
      marker: `${MARKER}=${id}`,
      env: {
        HOST: host,
        SGE_ND: "1", // daemons stay in the foreground, under the supervisor
        ...env,
      },
    });
    return new Cell(info, daemons);
  }

  async waitReady(): Promise<void> {
    this.info.startMs = await this.#daemons.waitReady({
      name: `Grid Engine cell in "${this.info.dir}"`,
      probeName: "qstat",
      portTaken: /can't bind socket|address already in use/i,
      logFiles: async () => {
        const files = ["supervisor.log", "log/qmaster.out", "qmaster/messages", "log/execd.out"];
        const execd = await Array.fromAsync(Deno.readDir(join(this.info.dir, "execd")))
          .catch(() => []);
        for (const e of execd) files.push(join("execd", e.name, "messages"));
        return files;
      },
      // Ready once the queue instance reports a load and no state (no "u"nknown, no alarm).
      probe: async () => {
        const { ok, text } = await ask("qstat", ["-f", "-q", QUEUE], this.env);
        const said = text.trim();
        const line = said.split("\n").find((l) => l.startsWith(`${QUEUE}@`)) ?? "";
        const ready = ok && /^\S+\s+\S+\s+\d+\/\d+\/\d+\s+[\d.]+\s+\S+\s*$/.test(line);
        return { ready, said };
      },
    });
  }

  /** Deletes every job, kills the daemons and job processes, removes the directory. */
  stop(): Promise<void> {
    // Jobs first, so the execd ends their processes the normal way.
    return this.#daemons.stop(() => quietly("qdel", ["-f", "-u", "*"], this.env));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

function clientEnv(info: GridEngineCellInfo): Record<string, string> {
  return {
    SGE_ROOT: info.root,
    SGE_CELL: info.cell,
    SGE_QMASTER_PORT: String(info.qmasterPort),
    SGE_EXECD_PORT: String(info.execdPort),
  };
}

/**
 * The host name as Grid Engine resolves it, and the other names its addresses resolve back to
 * (e.g. `localhost` for 127.0.0.1): these become aliases of the host in the cell.
 */
async function hostNames(
  env: Record<string, string>,
): Promise<{ host: string; aliases: string[] }> {
  const self = await output(join(SGE_BIN, "gethostname"), ["-all"], env);
  const host = /^Hostname:\s*(\S+)/m.exec(self)?.[1];
  const addresses = /^Host Address\(es\):\s*(.*)$/m.exec(self)?.[1]?.trim().split(/\s+/) ?? [];
  if (!host) throw new Error(`Cannot read this machine's host name from gethostname: ${self}`);
  const aliases = new Set<string>();
  for (const address of addresses.filter((a) => a !== "")) {
    const name = (await output(join(SGE_BIN, "gethostbyaddr"), ["-name", address], env)
      .catch(() => "")).trim();
    if (name !== "" && name !== host) aliases.add(name);
  }
  return { host, aliases: [...aliases] };
}

function bootstrap(dir: string, common: string): string {
  return [
    "admin_user              none",
    "default_domain          none",
    "ignore_fqdn             true",
    "spooling_method         classic",
    "spooling_lib            libspoolc",
    `spooling_params         ${common};${join(dir, "qmaster")}`,
    `binary_path             ${SGE_BIN}`,
    `qmaster_spool_dir       ${join(dir, "qmaster")}`,
    "security_mode           none",
    "listener_threads        2",
    "worker_threads          2",
    "scheduler_threads       1",
    "",
  ].join("\n");
}

/** The spool's global configuration and the `qconf -A*` files of the cell's objects. */
function templates(dir: string, host: string): Record<string, string> {
  const lines = (pairs: Record<string, string | number>) =>
    Object.entries(pairs).map(([k, v]) => `${k.padEnd(33)} ${v}`).join("\n") + "\n";
  const configuration = lines({
    conf_version: 0,
    execd_spool_dir: join(dir, "execd"),
    mailer: "/bin/true",
    xterm: "/usr/bin/xterm",
    load_sensor: "none",
    prolog: "none",
    epilog: "none",
    shell_start_mode: "unix_behavior",
    login_shells: "bash,sh,ksh,csh,tcsh",
    // The tests run as root, like the Slurm cluster's jobs.
    min_uid: 0,
    min_gid: 0,
    user_lists: "none",
    xuser_lists: "none",
    projects: "none",
    xprojects: "none",
    enforce_project: "false",
    enforce_user: "auto",
    load_report_time: "00:00:05",
    max_unheard: "00:05:00",
    reschedule_unknown: "00:00:00",
    loglevel: "log_warning",
    administrator_mail: "none",
    set_token_cmd: "none",
    pag_cmd: "none",
    token_extend_time: "none",
    shepherd_cmd: "none",
    qmaster_params: "none",
    execd_params: "none",
    reporting_params: "accounting=true reporting=false flush_time=00:00:01 joblog=false " +
      "sharelog=00:00:00",
    finished_jobs: 100,
    gid_range: "65400-65500",
    qlogin_command: "builtin",
    qlogin_daemon: "builtin",
    rlogin_command: "builtin",
    rlogin_daemon: "builtin",
    rsh_command: "builtin",
    rsh_daemon: "builtin",
    max_aj_instances: 2000,
    max_aj_tasks: 75000,
    max_u_jobs: 0,
    max_jobs: 0,
    auto_user_oticket: 0,
    auto_user_fshare: 0,
    auto_user_default_project: "none",
    auto_user_delete_time: 86400,
    delegated_file_staging: "false",
    reprioritize: 0,
    jsv_url: "none",
    jsv_allowed_mod: "ac,h,i,e,o,j,M,N,p,w",
  });
  const scheduler = lines({
    algorithm: "default",
    schedule_interval: "0:0:1",
    maxujobs: 0,
    queue_sort_method: "seqno",
    // A busy 2-core machine must not hold jobs back for load.
    job_load_adjustments: "NONE",
    load_adjustment_decay_time: "0:0:0",
    load_formula: "slots",
    schedd_job_info: "true",
    flush_submit_sec: 1,
    flush_finish_sec: 1,
    params: "none",
    reprioritize_interval: "0:0:0",
    halftime: 168,
    usage_weight_list: "cpu=1.000000,mem=0.000000,io=0.000000",
    compensation_factor: "5.000000",
    weight_user: "0.250000",
    weight_project: "0.250000",
    weight_department: "0.250000",
    weight_job: "0.250000",
    weight_tickets_functional: 0,
    weight_tickets_share: 0,
    share_override_tickets: "TRUE",
    share_functional_shares: "TRUE",
    max_functional_jobs_to_schedule: 200,
    report_pjob_tickets: "TRUE",
    max_pending_tasks_per_job: 50,
    halflife_decay_list: "none",
    policy_hierarchy: "OFS",
    weight_ticket: "0.500000",
    weight_waiting_time: "0.278000",
    weight_deadline: "3600000.000000",
    weight_urgency: "0.500000",
    weight_priority: "0.000000",
    max_reservation: 0,
    default_duration: "INFINITY",
  });
  const exechost = lines({
    hostname: host,
    load_scaling: "NONE",
    complex_values: "NONE",
    user_lists: "NONE",
    xuser_lists: "NONE",
    projects: "NONE",
    xprojects: "NONE",
    usage_scaling: "NONE",
    report_variables: "NONE",
  });
  const pe = lines({
    pe_name: PE,
    slots: 999,
    user_lists: "NONE",
    xuser_lists: "NONE",
    start_proc_args: "NONE",
    stop_proc_args: "NONE",
    allocation_rule: "$fill_up",
    control_slaves: "TRUE",
    job_is_first_task: "FALSE",
    urgency_slots: "min",
    accounting_summary: "FALSE",
    qsort_args: "NONE",
  });
  const project = lines({ name: PROJECT, oticket: 0, fshare: 0, acl: "NONE", xacl: "NONE" });
  const limits = Object.fromEntries(
    ["rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem"]
      .flatMap((l) => [[`s_${l}`, "INFINITY"], [`h_${l}`, "INFINITY"]]),
  );
  const queue = lines({
    qname: QUEUE,
    hostlist: host,
    seq_no: 0,
    load_thresholds: "NONE",
    suspend_thresholds: "NONE",
    nsuspend: 1,
    suspend_interval: "00:05:00",
    priority: 0,
    min_cpu_interval: "00:05:00",
    processors: "UNDEFINED",
    qtype: "BATCH INTERACTIVE",
    ckpt_list: "NONE",
    pe_list: PE,
    rerun: "FALSE",
    slots: SLOTS,
    tmpdir: "/tmp",
    shell: "/bin/bash",
    prolog: "NONE",
    epilog: "NONE",
    shell_start_mode: "unix_behavior",
    starter_method: "NONE",
    suspend_method: "NONE",
    resume_method: "NONE",
    terminate_method: "NONE",
    notify: "00:00:60",
    owner_list: "NONE",
    user_lists: "NONE",
    xuser_lists: "NONE",
    subordinate_list: "NONE",
    complex_values: "NONE",
    projects: "NONE",
    xprojects: "NONE",
    calendar: "NONE",
    initial_state: "default",
    ...limits,
  });
  return { configuration, scheduler, exechost, pe, project, queue };
}

let shared: Promise<Record<string, string>> | undefined;

/**
 * A private cell for this test process, as client environment, started on first use and stopped
 * when this process exits.
 */
export function sharedGridEngine(): Promise<Record<string, string>> {
  shared ??= (async () => {
    const cell = await startGridEngineCell();
    globalThis.addEventListener("unload", () => void cell.stop());
    return cell.env;
  })();
  return shared;
}
