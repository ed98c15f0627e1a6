/**
 * Strong scaling on one node: a fixed amount of sleep-bound work per worker (by default ten 1 s
 * tasks each) run through the real stack at several worker counts. For each count it starts the
 * service and an endpoint with that many workers (one private broker for all counts), and
 * measures
 * - start-up: from launching `funcx-endpoint start` until it reports started, which is when its
 *   manager's first wave of workers has said hello (the engine takes tasks from then on while
 *   the other workers keep starting), and until the service's status report shows every worker
 *   up (the run starts only then, so it measures running, not starting);
 * - the run: every task submitted at once through a `FuncXExecutor` with its default settings,
 *   until the last result is in hand; efficiency = ideal time (tasks per worker x task time) /
 *   measured wall time.
 * The tasks return their worker's pid, so the transitions the service keeps for each task
 * (`waiting-for-launch`, `running`, `execution-start`, `execution-end`) say where the time
 * beyond the ideal went: the first wave, gaps between tasks on a worker, an uneven share of
 * tasks, or the result path.
 *
 * Cores do not bound these tasks, so the endpoint oversubscribes: `cores_per_worker` is set so
 * that `max_workers_per_node` (the count) is what limits the workers.
 *
 * Usage: `deno task bench:scaling [--workers 16,64,256] [--tasks-per-worker 10] [--task-ms 1000]
 * [--dump-tasks] [--worker-huge-pages]`. It prints a table and writes `bench/results/scaling.json`; with
 * `--dump-tasks`, each task's times also go to `bench/results/scaling_tasks_<workers>.json`.
 *
 * @module
 */
import { cmdline, descendants, processJiffies } from "./_proc.ts";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { FuncXExecutor } from "../mod.ts";
import { ensureRabbitInstalled, RabbitBroker } from "../tests/harness/rabbitmq.ts";
import { runDeno } from "../tests/harness/process.ts";
import { percentile } from "./_repeat.ts";
import {
  brokerAccess,
  clientOf,
  createVhost,
  deleteVhost,
  type EndpointHandle,
  type ServiceHandle,
  startEndpoint,
  startService,
} from "../tests/harness/stack.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    workers: { type: "string", default: "16,64,256" },
    "tasks-per-worker": { type: "string", default: "10" },
    "task-ms": { type: "string", default: "1000" },
    "dump-tasks": { type: "boolean", default: false },
    "worker-huge-pages": { type: "boolean", default: false },
  },
});
const counts = values.workers.split(",").map((s) => Number(s.trim()));
const tasksPerWorker = Number(values["tasks-per-worker"]);
const taskMs = Number(values["task-ms"]);
if (counts.some((n) => !Number.isInteger(n) || n < 1)) {
  throw new RangeError(`Invalid --workers "${values.workers}": expected whole numbers >= 1`);
}
if (!Number.isInteger(tasksPerWorker) || tasksPerWorker < 1 || !(taskMs >= 0)) {
  throw new RangeError("Invalid --tasks-per-worker or --task-ms");
}

/** The task: waits `ms` on a timer and says which worker ran it. */
async function sleepTask(ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return Deno.pid;
}

const outDir = new URL("./results/", import.meta.url).pathname;
const wallNow = () => performance.timeOrigin + performance.now();
const round = (v: number, digits = 2) => Number(v.toFixed(digits));
function pct(values: number[], p: number): number {
  return values.length === 0 ? NaN : percentile([...values].sort((a, b) => a - b), p);
}
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** Runs `f` over `items` with at most `limit` calls in flight. */
async function mapLimit<T, R>(items: T[], limit: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  }));
  return out;
}

/** Jiffies the whole machine has spent busy and in total, from `/proc/stat`. */
function machineJiffies(): { busy: number; total: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1)
    .map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total }; // idle, iowait
}

/** The processes of the stack by part, to see which one spends the CPU. */
function stackParts(
  broker: RabbitBroker,
  service: ServiceHandle,
  endpoint: EndpointHandle,
): Record<string, number[]> {
  const daemon = endpoint.process.child.pid;
  const below = descendants(daemon);
  return {
    client: [Deno.pid],
    broker: [...Deno.readDirSync("/proc")].map((e) => Number(e.name))
      .filter((p) =>
        p > 0 && cmdline(p).includes("beam.smp") && cmdline(p).includes(broker.info.dir)
      ),
    service: [service.process.child.pid],
    daemon: [daemon],
    manager: below.filter((p) => cmdline(p).includes("manager_main")),
    workers: below.filter((p) => cmdline(p).includes("worker_main")),
  };
}

/** A reading of the CPU counters: the machine's jiffies, and each part's. */
interface CpuSample {
  /** Wall-clock ms. */
  t: number;
  busy: number;
  total: number;
  parts: Record<string, number>;
}

/** Reads the CPU counters every `ms` until stopped. */
function sampleCpu(ms: number, parts: Record<string, number[]>): { stop(): CpuSample[] } {
  const read = (): CpuSample => {
    // Reading hundreds of processes takes a while on a busy machine: stamp the end of it.
    const counts = Object.fromEntries(
      Object.entries(parts).map(([k, pids]) => [k, sum(pids.map(processJiffies))]),
    );
    return { t: wallNow(), ...machineJiffies(), parts: counts };
  };
  const out = [read()];
  const timer = setInterval(() => out.push(read()), ms);
  return {
    stop() {
      clearInterval(timer);
      out.push(read());
      return out;
    },
  };
}

/**
 * CPU use per `bin` ms from `origin` (wall-clock ms), from the readings around each bin (this
 * process's timers run late when the machine is saturated, so readings are not evenly spaced):
 * `machine` in % of all cores, each part in % of one core.
 */
function cpuByBin(
  samples: CpuSample[],
  origin: number,
  bin: number,
  bins: number,
): Record<string, number[]> {
  const out: Record<string, number[]> = { machine: [] };
  for (let i = 0; i < bins; i++) {
    const from = origin + i * bin;
    const s0 = samples.findLast((x) => x.t <= from) ?? samples[0]!;
    const s1 = samples.find((x) => x.t >= from + bin) ?? samples[samples.length - 1]!;
    const seconds = (s1.t - s0.t) / 1000;
    out["machine"]!.push(round((s1.busy - s0.busy) / Math.max(1, s1.total - s0.total) * 100, 0));
    for (const k of Object.keys(s0.parts)) {
      // USER_HZ is 100: jiffies per second are % of one core.
      (out[k] ??= []).push(
        seconds > 0 ? round((s1.parts[k]! - s0.parts[k]!) / seconds, 0) : NaN,
      );
    }
  }
  return out;
}

/** Per `bin` ms from the first submit: tasks that reached each state in it, and workers busy. */
function timeline(
  tasks: TaskTimes[],
  bin: number,
  cpu: CpuSample[],
  origin: number,
): Record<string, unknown> {
  const end = Math.max(...tasks.map((t) => t.inHand));
  const bins = Math.ceil(end / bin);
  const count = (state: string) => {
    const out = new Array<number>(bins).fill(0);
    for (const t of tasks) {
      const at = t.at[state];
      if (at !== undefined) out[Math.min(bins - 1, Math.max(0, Math.floor(at / bin)))]!++;
    }
    return out;
  };
  const executing = Array.from(
    { length: bins },
    (_, i) =>
      tasks.filter((t) =>
        (t.at["execution-start"] ?? Infinity) <= (i + 0.5) * bin &&
        (t.at["execution-end"] ?? -Infinity) > (i + 0.5) * bin
      ).length,
  );
  return {
    at_interchange: count("waiting-for-nodes"),
    execution_start: count("execution-start"),
    executing_mid_bin: executing,
    /** `machine`: % of all cores busy; each part: % of one core. */
    cpu_pct: cpuByBin(cpu, origin, bin, bins),
  };
}

/** One task of the run, times in ms since the first submit call. */
interface TaskTimes {
  pid: number;
  /** State name to ms since the first submit. */
  at: Record<string, number>;
  inHand: number;
}

/** Figures of one worker count. */
interface Row {
  workers: number;
  tasks: number;
  /** `start` launched to its started event (the first wave of workers said hello). */
  startup_s: number;
  /** `start` launched to the first status report with every worker in it (all workers up). */
  startup_status_s: number;
  run_s: number;
  ideal_s: number;
  efficiency_pct: number;
  /** CPU in the second before the run: `machine` % of all cores, each part % of one core. */
  idle_cpu_pct_before_run: Record<string, number>;
  analysis: Record<string, unknown>;
}

/** Where the run's time went, from the tasks' transitions. */
function analyse(
  n: number,
  tasks: TaskTimes[],
  cpu: CpuSample[],
  origin: number,
): Record<string, unknown> {
  const start = (t: TaskTimes) => t.at["execution-start"] ?? NaN;
  const end = (t: TaskTimes) => t.at["execution-end"] ?? NaN;
  const starts = tasks.map(start).sort((a, b) => a - b);
  const byWorker = new Map<number, TaskTimes[]>();
  for (const t of tasks) byWorker.set(t.pid, [...(byWorker.get(t.pid) ?? []), t]);
  const perWorker = [...byWorker.values()].map((l) => l.length);
  // Between two tasks on one worker: the end of one, the next one handed to the worker
  // (`running`), the next one started.
  const endToRunning: number[] = [];
  const runningToStart: number[] = [];
  const endToStart: number[] = [];
  /** Per worker: idle time between its first start and its last end. */
  const idleInside: number[] = [];
  /** Per worker: first start and last end. */
  const firstStart: number[] = [];
  /** Per worker: its first task handed to it (`running`), and how long that task ran. */
  const firstRunning: number[] = [];
  const firstExec: number[] = [];
  const laterExec: number[] = [];
  const lastEnd: number[] = [];
  /** Tasks that waited at the manager (`waiting-for-launch` → `running`) longer than 50 ms. */
  let queuedAtManager = 0;
  for (const list of byWorker.values()) {
    list.sort((a, b) => start(a) - start(b));
    firstStart.push(start(list[0]!));
    firstRunning.push(list[0]!.at["running"] ?? NaN);
    firstExec.push(end(list[0]!) - start(list[0]!));
    for (const t of list.slice(1)) laterExec.push(end(t) - start(t));
    lastEnd.push(end(list[list.length - 1]!));
    let idle = 0;
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1]!;
      const cur = list[i]!;
      endToRunning.push((cur.at["running"] ?? NaN) - end(prev));
      runningToStart.push(start(cur) - (cur.at["running"] ?? NaN));
      endToStart.push(start(cur) - end(prev));
      idle += start(cur) - end(prev);
    }
    idleInside.push(idle);
  }
  for (const t of tasks) {
    if ((t.at["running"] ?? 0) - (t.at["waiting-for-launch"] ?? 0) > 50) queuedAtManager++;
  }
  const exec = tasks.map((t) => end(t) - start(t));
  const resultPath = tasks.map((t) => t.inHand - end(t));
  const lastInHand = Math.max(...tasks.map((t) => t.inHand));
  const lastExecEnd = Math.max(...tasks.map(end));
  const stateP50 = (state: string) =>
    round(pct(tasks.map((t) => t.at[state] ?? NaN).filter((v) => !Number.isNaN(v)), 0.5), 1);
  return {
    workers_used: byWorker.size,
    tasks_per_worker_min: Math.min(...perWorker),
    tasks_per_worker_max: Math.max(...perWorker),
    /** Submit to the first task and to the n-th task executing (every worker busy). */
    first_execution_start_ms: round(starts[0]!, 1),
    all_workers_busy_ms: round(starts[Math.min(n, starts.length) - 1]!, 1),
    /** Per worker: its first start; p50 and max (the first wave's spread). */
    worker_first_start_p50_ms: round(pct(firstStart, 0.5), 1),
    worker_first_start_max_ms: round(Math.max(...firstStart), 1),
    worker_first_running_p50_ms: round(pct(firstRunning, 0.5), 1),
    worker_first_running_max_ms: round(Math.max(...firstRunning), 1),
    /** A worker's first task against its later ones: the wall time of a 1 s timer. */
    first_task_exec_ms_p50: round(pct(firstExec, 0.5), 1),
    first_task_exec_ms_max: round(Math.max(...firstExec), 1),
    later_task_exec_ms_p50: round(pct(laterExec, 0.5), 1),
    later_task_exec_ms_max: round(Math.max(...laterExec), 1),
    worker_last_end_p50_ms: round(pct(lastEnd, 0.5), 1),
    worker_last_end_max_ms: round(Math.max(...lastEnd), 1),
    /** Time workers spent in the function over workers x wall time. */
    worker_busy_pct: round(sum(exec) / (n * lastInHand) * 100, 1),
    exec_ms_p50: round(pct(exec, 0.5), 1),
    exec_ms_max: round(Math.max(...exec), 1),
    /** Between consecutive tasks on one worker. */
    gap_end_to_next_start_ms_p50: round(pct(endToStart, 0.5), 2),
    gap_end_to_next_start_ms_p99: round(pct(endToStart, 0.99), 2),
    gap_end_to_next_running_ms_p50: round(pct(endToRunning, 0.5), 2),
    gap_running_to_start_ms_p50: round(pct(runningToStart, 0.5), 2),
    worker_idle_between_tasks_ms_p50: round(pct(idleInside, 0.5), 1),
    worker_idle_between_tasks_ms_max: round(Math.max(...idleInside), 1),
    tasks_queued_at_manager_over_50ms: queuedAtManager,
    result_path_ms_p50: round(pct(resultPath, 0.5), 1),
    result_path_ms_p99: round(pct(resultPath, 0.99), 1),
    last_execution_end_ms: round(lastExecEnd, 1),
    last_result_in_hand_ms: round(lastInHand, 1),
    /** Median ms from the first submit call to each state, over all tasks. */
    states_p50_ms: Object.fromEntries(
      ["waiting-for-ep", "waiting-for-nodes", "waiting-for-launch", "running", "execution-start"]
        .map((s) => [s, stateP50(s)]),
    ),
    /** Per 500 ms from the first submit call. */
    timeline_500ms: timeline(tasks, 500, cpu, origin),
  };
}

async function runCount(broker: RabbitBroker, n: number): Promise<Row> {
  const access = brokerAccess(broker);
  const dir = await Deno.makeTempDir({ prefix: `funcx-scaling-${n}-` });
  const vhost = `scaling-${n}-${crypto.randomUUID().slice(0, 8)}`;
  let service: ServiceHandle | undefined;
  let endpoint: EndpointHandle | undefined;
  let fx: FuncXExecutor | undefined;
  try {
    const amqpUrl = await createVhost(access, vhost);
    service = await startService({ dir, amqpUrl, broker: access });
    const client = clientOf(service);
    const fn = await client.registerFunction(sleepTask);
    const total = n * tasksPerWorker;
    // `configure` first, so the start-up time is `start` alone.
    await runDeno("cli/funcx_endpoint.ts", ["configure", "default"], {
      ...service.env,
      FUNCX_CONFIG_DIR: join(dir, "config"),
    });
    console.error(`${n} workers: starting the endpoint`);
    const t0 = performance.now();
    endpoint = await startEndpoint({
      service,
      dir,
      workers: n,
      readyTimeoutS: 600,
      config: {
        prefetch: Math.max(1000, total),
        engine: {
          // Sleeping tasks need no core: let max_workers_per_node (the count) decide.
          // (n + 1: floor(cores / cores_per_worker) must not round below n.)
          cores_per_worker: Math.min(1, navigator.hardwareConcurrency / (n + 1)),
          // One queued task per worker at the manager, so a worker never waits on the daemon.
          prefetch_capacity: n,
          worker_huge_pages: values["worker-huge-pages"],
        },
      },
    });
    const startupS = (performance.now() - t0) / 1000;
    let startupStatusS = NaN;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
      const status = await client.getEndpointStatus(endpoint.endpointId);
      const state = status.logs[0] as { total_workers?: number } | undefined;
      if ((state?.total_workers ?? 0) >= n) {
        startupStatusS = (performance.now() - t0) / 1000;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    fx = new FuncXExecutor({ endpointId: endpoint.endpointId, client });
    // Opens the result stream, so the run does not pay for it.
    await fx.submitToRegisteredFunction(fn, [0]);
    const parts = stackParts(broker, service, endpoint);
    // The idle stack just before the run (the workers should be done starting).
    const idleFrom = wallNow();
    const idle = sampleCpu(1000, parts);
    await new Promise((r) => setTimeout(r, 1000));
    const idleCpu = Object.fromEntries(
      Object.entries(cpuByBin(idle.stop(), idleFrom, 1000, 1)).map(([k, v]) => [k, v[0]!]),
    );

    console.error(`${n} workers: running ${total} tasks of ${taskMs} ms`);
    const cpu = sampleCpu(100, parts);
    const s = wallNow();
    const futures = Array.from(
      { length: total },
      () => fx!.submitToRegisteredFunction(fn, [taskMs]),
    );
    const done = await Promise.all(
      futures.map((f) => f.then((pid) => ({ pid: pid as number, inHand: wallNow() - s }))),
    );
    const cpuBusy = cpu.stop();
    const runS = (Math.max(...done.map((d) => d.inHand))) / 1000;
    const idealS = tasksPerWorker * taskMs / 1000;

    const infos = await mapLimit(futures, 16, (f) => client.getTask(f.taskId!));
    const tasks: TaskTimes[] = infos.map((info, i) => {
      const at: Record<string, number> = {};
      const transitions = (info as unknown as {
        task_transitions?: Array<{ state: string; timestamp: string }>;
      }).task_transitions ?? [];
      for (const t of transitions) at[t.state] = Number(BigInt(t.timestamp) / 1000n) / 1000 - s;
      return { pid: done[i]!.pid, at, inHand: done[i]!.inHand };
    });
    if (values["dump-tasks"]) {
      await Deno.mkdir(outDir, { recursive: true });
      await Deno.writeTextFile(join(outDir, `scaling_tasks_${n}.json`), JSON.stringify(tasks));
    }
    return {
      workers: n,
      tasks: total,
      startup_s: round(startupS),
      startup_status_s: round(startupStatusS),
      run_s: round(runS),
      ideal_s: idealS,
      efficiency_pct: round(idealS / runS * 100, 1),
      idle_cpu_pct_before_run: idleCpu,
      analysis: analyse(n, tasks, cpuBusy, s),
    };
  } finally {
    await fx?.shutdown().catch(() => {});
    await endpoint?.process.stop().catch(() => {});
    await service?.process.stop().catch(() => {});
    await deleteVhost(access, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

await ensureRabbitInstalled();
await using broker = await RabbitBroker.start();
const rows: Row[] = [];
for (const n of counts) rows.push(await runCount(broker, n));

console.log(
  `\nStrong scaling on one node (${navigator.hardwareConcurrency} cores): ${tasksPerWorker} ` +
    `tasks of ${taskMs} ms per worker, FuncXExecutor defaults\n`,
);
console.log(
  "| workers | start-up s (started / all workers up) | run s | ideal s | efficiency % |\n" +
    "|---|---|---|---|---|",
);
for (const r of rows) {
  console.log(
    `| ${r.workers} | ${r.startup_s} / ${r.startup_status_s} | ${r.run_s} | ${r.ideal_s} | ` +
      `${r.efficiency_pct} |`,
  );
}
console.log("\nWhere the time beyond the ideal went (ms from the first submit call)\n");
console.log(
  "| workers | all busy | first start max | tasks/worker | gap p50 / p99 | last exec end | " +
    "last result | result path p50 / p99 |\n|---|---|---|---|---|---|---|---|",
);
for (const r of rows) {
  const a = r.analysis;
  console.log(
    `| ${r.workers} | ${a["all_workers_busy_ms"]} | ${a["worker_first_start_max_ms"]} | ` +
      `${a["tasks_per_worker_min"]}-${a["tasks_per_worker_max"]} | ` +
      `${a["gap_end_to_next_start_ms_p50"]} / ${a["gap_end_to_next_start_ms_p99"]} | ` +
      `${a["last_execution_end_ms"]} | ${a["last_result_in_hand_ms"]} | ` +
      `${a["result_path_ms_p50"]} / ${a["result_path_ms_p99"]} |`,
  );
}
await Deno.mkdir(outDir, { recursive: true });
const out = join(outDir, "scaling.json");
await Deno.writeTextFile(
  out,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      deno: Deno.version.deno,
      cpus: navigator.hardwareConcurrency,
      tasks_per_worker: tasksPerWorker,
      task_ms: taskMs,
      worker_huge_pages: values["worker-huge-pages"],
      rows,
    },
    null,
    2,
  ) + "\n",
);
console.log(`\nwrote ${out}`);
