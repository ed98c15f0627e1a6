/**
 * End-to-end benchmark on one machine: a private broker, the real service, a real endpoint
 * (daemon with its interchange, the local block's manager (in the daemon by default; a
 * subprocess with `--local-manager process`), Deno workers) and the SDK's `FuncXExecutor` with
 * its AMQP result stream. It measures
 * - endpoint start: from launching `funcx-endpoint start` to the first result;
 * - one task's round trip (submit, run, result on the stream), sequentially, p50/p99, and by hop;
 * - throughput of no-op tasks through the executor, and the CPU each process (client, broker,
 *   service, daemon, manager, workers) spends per task meanwhile;
 * - memory (RSS) of the idle endpoint daemon, one worker and the manager, and the private part
 *   (USS) of the daemon's and a worker's.
 *
 * A shared machine moves figures by ±20 % from run to run, so every figure is measured
 * `--repeat` times (3 by default; the endpoint restarted for each) and given as the median with
 * the range, and the bench warns when the load average shows other work, before and after, and
 * when the hypervisor took more than 5 % of the machine's CPU time (steal) during the runs.
 * It prints a table and writes `bench/results/roundtrip.json`.
 *
 * With `--peers`, Celery (RabbitMQ broker, Redis results) and Dask distributed run in turn with
 * funcX in each repetition, on the same machine with the same tasks, workers and rounds (see
 * `bench/peers/`); a second table puts them side by side with the ratios, and the JSON keeps them
 * (under `peers`, and alone in `bench/results/peers.json`).
 *
 * Usage: `deno task bench [--tasks 20000] [--workers 2] [--rounds 300] [--repeat 3] [--batch N]
 * [--local-manager in_process|process] [--queue-type auto|quorum|classic] [--no-direct-results]
 * [--peers [--celery-prefetch 4]]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { FuncXExecutor } from "../mod.ts";
import { CELERY_DEFAULT_PREFETCH, ensureCeleryInstalled, runCelery } from "./peers/celery.ts";
import { ensureDaskInstalled, runDask } from "./peers/dask.ts";
import {
  type PeerFigures,
  peersRecord,
  peerSummary,
  sideBySideTable,
  spreadTotal,
} from "./peers/side_by_side.ts";
import { hopChartSvg } from "./hop_chart.ts";
import { cmdline, descendants, processJiffies } from "./_proc.ts";
import {
  cpuTimes,
  loadAverage,
  loadWarning,
  percentile,
  showSpread,
  spread,
  spreadByKey,
  stealPercent,
  stealWarning,
} from "./_repeat.ts";
import { residentMib } from "../endpoint/engine/worker_process.ts";
import { ensureRabbitInstalled, RabbitBroker } from "../tests/harness/rabbitmq.ts";
import {
  brokerAccess,
  clientOf,
  createVhost,
  declaredQueueType,
  startEndpoint,
  startService,
} from "../tests/harness/stack.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "20000" },
    workers: { type: "string", default: "2" },
    rounds: { type: "string", default: "300" },
    repeat: { type: "string", default: "3" },
    // The executor's own default unless given: the figure a user gets without tuning.
    batch: { type: "string" },
    "local-manager": { type: "string", default: "in_process" },
    // The service's default: the type the vhost's queues have, else classic on one node.
    "queue-type": { type: "string", default: "auto" },
    // The service's `--no-direct-results`: results reach the SDK through the service (two broker
    // hops) instead of straight from the endpoint.
    "no-direct-results": { type: "boolean", default: false },
    peers: { type: "boolean", default: false },
    "celery-prefetch": { type: "string", default: String(CELERY_DEFAULT_PREFETCH) },
  },
});
const positive = (flag: "tasks" | "workers" | "rounds" | "repeat") => {
  const n = Number(values[flag]);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`Invalid --${flag} "${values[flag]}": expected a whole number >= 1`);
  }
  return n;
};
const tasks = positive("tasks");
const workers = positive("workers");
const rounds = positive("rounds");
const repeat = positive("repeat");
const batchSize = values.batch === undefined ? undefined : Number(values.batch);
const queueSetting = values["queue-type"];
if (queueSetting !== "auto" && queueSetting !== "quorum" && queueSetting !== "classic") {
  throw new RangeError(`Invalid --queue-type "${queueSetting}": auto, quorum or classic`);
}
const localManager = values["local-manager"];
if (localManager !== "in_process" && localManager !== "process") {
  throw new RangeError(`Invalid --local-manager "${localManager}": in_process or process`);
}

function rssMiB(pid: number): number {
  return Math.round((residentMib(pid) ?? 0) * 10) / 10;
}

/**
 * Memory only this process holds (USS: private pages). RSS also counts the pages of the `deno`
 * executable that every Deno process on the machine shares (~30-40 MiB once the JIT is warm).
 */
function ussMiB(pid: number): number {
  try {
    const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    const kb = [...rollup.matchAll(/^Private_(?:Clean|Dirty):\s+(\d+)/gm)]
      .reduce((n, m) => n + Number(m[1]), 0);
    return Math.round(kb / 1024 * 10) / 10;
  } catch {
    return 0;
  }
}

/**
 * Proportional memory (PSS): private pages plus this process's share of pages it shares with
 * others, such as the `deno` executable's code that every worker maps.
 */
function pssMiB(pid: number): number {
  try {
    const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    return Math.round(Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? "0") / 1024 * 10) / 10;
  } catch {
    return 0;
  }
}

/**
 * Messages the broker has taken in (`publish`) and handed out (`deliver_get`) on the benchmark's
 * vhost so far. The management plugin refreshes these every 5 s, so a reading waits that long
 * after the last message it must count.
 */
async function brokerMessages(): Promise<{ published: number; delivered: number }> {
  await new Promise((r) => setTimeout(r, 5500));
  const res = await fetch(`${access.managementUrl}/api/vhosts/bench`, {
    headers: { authorization: `Basic ${btoa(`${access.user}:${access.password}`)}` },
  });
  const stats = (await res.json()).message_stats ?? {};
  return { published: stats.publish ?? 0, delivered: stats.deliver_get ?? 0 };
}

/** CPU seconds (user + system) a process has used so far; 0 once it is gone. */
function cpuS(pid: number): number {
  return processJiffies(pid) / 100;
}

const loadBefore = loadAverage();
const warnedBefore = loadWarning();
if (warnedBefore) console.error(`WARNING: ${warnedBefore}`);
await ensureRabbitInstalled();
if (values.peers) {
  await ensureCeleryInstalled();
  await ensureDaskInstalled();
}
const t0 = performance.now();
await using broker = await RabbitBroker.start();
const brokerS = (performance.now() - t0) / 1000;
const access = brokerAccess(broker);
const dir = await Deno.makeTempDir({ prefix: "funcx-bench-" });
const amqpUrl = await createVhost(access, "bench");
const service = await startService({
  dir,
  amqpUrl,
  broker: access,
  args: [
    "--queue-type",
    queueSetting,
    ...(values["no-direct-results"] ? ["--no-direct-results"] : []),
  ],
});
/** The type the service declared its queues as (`auto` resolves at its start). */
const queueType = declaredQueueType(await service.process.log()) ?? queueSetting;
const client = clientOf(service);
const noop = await client.registerFunction(() => null);

/** One repetition's figures of funcX. */
interface FuncxRun {
  start_to_first_result_s: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  hops_p50_ms: Record<string, number>;
  hops_p99_ms: Record<string, number>;
  tasks_per_s: number;
  cpu_us_per_task: Record<string, number>;
  memory_mib: Record<string, number>;
  broker_messages_per_task?: { published: number; delivered: number };
}

/** Starts the endpoint, measures every figure once, and stops it. */
async function measureFuncx(withBrokerCounts: boolean): Promise<FuncxRun> {
  const epStart = performance.now();
  const endpoint = await startEndpoint({
    service,
    dir,
    workers,
    config: { engine: { local_manager: localManager } },
  });
  const fx = new FuncXExecutor({
    endpointId: endpoint.endpointId,
    client,
    ...(batchSize === undefined ? {} : { batchSize }),
  });
  try {
    await fx.submitToRegisteredFunction(noop);
    const startToFirstS = (performance.now() - epStart) / 1000;
    const daemonPid = endpoint.process.child.pid;
    await new Promise((r) => setTimeout(r, 1000));
    const daemonFreshRss = rssMiB(daemonPid);

    // Warm-up, as the peers get: 20 unmeasured round trips (connections, first compiles).
    for (let i = 0; i < 20; i++) await fx.submitToRegisteredFunction(noop);

    // Sequential round trips: one task in flight at a time. Each task's transitions (recorded by
    // the endpoint, interchange, manager and worker on this same clock) say where the time went.
    const latencies: number[] = [];
    const trips: Array<{ start: number; end: number; taskId: string }> = [];
    const wallNow = () => performance.timeOrigin + performance.now();
    for (let i = 0; i < rounds; i++) {
      const s = performance.now();
      const start = wallNow();
      const f = fx.submitToRegisteredFunction(noop);
      await f;
      latencies.push(performance.now() - s);
      trips.push({ start, end: wallNow(), taskId: f.taskId! });
    }
    latencies.sort((a, b) => a - b);
    /** Milliseconds from the submit call to each state, then to the result in hand. */
    const hops: Record<string, number[]> = {};
    for (const trip of trips) {
      const info = await client.getTask(trip.taskId) as unknown as {
        task_transitions?: Array<{ state: string; timestamp: string }>;
      };
      for (const t of info.task_transitions ?? []) {
        (hops[t.state] ??= []).push(Number(BigInt(t.timestamp) / 1000n) / 1000 - trip.start);
      }
      (hops["result in hand"] ??= []).push(trip.end - trip.start);
    }
    const hopPct = (p: number) =>
      Object.fromEntries(
        Object.entries(hops).map((
          [k, v],
        ) => [k, Number(percentile(v.sort((a, b) => a - b), p).toFixed(2))]),
      );

    // Throughput: all tasks submitted at once, drained in batches. The CPU each process spends
    // on them says where the time goes (on a machine with few cores, CPU bounds throughput).
    const brokerPids = [...Deno.readDirSync("/proc")].map((e) => Number(e.name))
      .filter((p) =>
        p > 0 && cmdline(p).includes("beam.smp") && cmdline(p).includes(broker.info.dir)
      );
    const endpointPids = descendants(daemonPid);
    const parts: Record<string, number[]> = {
      client: [Deno.pid],
      broker: brokerPids,
      service: [service.process.child.pid],
      daemon: [daemonPid],
      manager: endpointPids.filter((p) => cmdline(p).includes("manager_main")),
      workers: endpointPids.filter((p) => cmdline(p).includes("worker_main")),
    };
    if (parts.manager!.length === 0) delete parts.manager; // in the daemon
    const cpuNow = () =>
      Object.fromEntries(
        Object.entries(parts).map(([k, pids]) => [k, pids.reduce((n, p) => n + cpuS(p), 0)]),
      );
    const messagesBefore = withBrokerCounts ? await brokerMessages() : undefined;
    const cpuBefore = cpuNow();
    const s = performance.now();
    const futures = Array.from({ length: tasks }, () => fx.submitToRegisteredFunction(noop));
    await Promise.all(futures);
    const totalS = (performance.now() - s) / 1000;
    const cpuAfter = cpuNow();
    const cpuPerTaskUs = Object.fromEntries(
      Object.keys(parts).map((k) => [k, Math.round((cpuAfter[k]! - cpuBefore[k]!) / tasks * 1e6)]),
    );

    // Memory: let the endpoint go idle, then read the daemon and its workers.
    await new Promise((r) => setTimeout(r, 2000));
    const after = descendants(daemonPid);
    const workerPids = after.filter((p) => cmdline(p).includes("worker_main"));
    const managerPids = after.filter((p) => cmdline(p).includes("manager_main"));
    const maxOf = (pids: number[], f: (pid: number) => number) =>
      pids.length ? Math.max(...pids.map(f)) : 0;
    const run: FuncxRun = {
      start_to_first_result_s: Number(startToFirstS.toFixed(2)),
      p50: Number(percentile(latencies, 0.5).toFixed(2)),
      p95: Number(percentile(latencies, 0.95).toFixed(2)),
      p99: Number(percentile(latencies, 0.99).toFixed(2)),
      max: Number(latencies.at(-1)!.toFixed(2)),
      hops_p50_ms: hopPct(0.5),
      hops_p99_ms: hopPct(0.99),
      tasks_per_s: Math.round(tasks / totalS),
      cpu_us_per_task: cpuPerTaskUs,
      memory_mib: {
        idle_daemon_fresh: daemonFreshRss,
        idle_daemon_after_load: rssMiB(daemonPid),
        idle_daemon_after_load_uss: ussMiB(daemonPid),
        worker: maxOf(workerPids, rssMiB),
        worker_uss: maxOf(workerPids, ussMiB),
        worker_pss: maxOf(workerPids, pssMiB),
        manager: maxOf(managerPids, rssMiB),
      },
    };
    if (messagesBefore) {
      const messagesAfter = await brokerMessages();
      run.broker_messages_per_task = {
        published: Number(
          ((messagesAfter.published - messagesBefore.published) / tasks).toFixed(3),
        ),
        delivered: Number(
          ((messagesAfter.delivered - messagesBefore.delivered) / tasks).toFixed(3),
        ),
      };
    }
    return run;
  } finally {
    await fx.shutdown();
    await endpoint.process.stop();
  }
}

// Each repetition runs every system in turn, so that what else the machine does falls on all.
const runs: FuncxRun[] = [];
const peerRuns: Record<string, PeerFigures[]> = {};
const loads: number[] = [];
/** The hypervisor's share of the CPU time (%) during each funcX run. */
const steals: number[] = [];
const cpuAtStart = cpuTimes();
for (let i = 0; i < repeat; i++) {
  if (values.peers) {
    console.error(`run ${i + 1}/${repeat}: Celery (${tasks} tasks, ${workers} workers)`);
    (peerRuns.Celery ??= []).push(
      await runCelery(broker, {
        tasks,
        workers,
        rounds,
        prefetch: Number(values["celery-prefetch"]),
      }),
    );
    console.error(`run ${i + 1}/${repeat}: Dask`);
    (peerRuns.Dask ??= []).push(await runDask({ tasks, workers, rounds }));
  }
  console.error(`run ${i + 1}/${repeat}: funcX (${localManager} manager)`);
  loads.push(loadAverage()[0]);
  const cpuBefore = cpuTimes();
  runs.push(await measureFuncx(i === 0));
  steals.push(stealPercent(cpuBefore, cpuTimes()));
}
const stealAll = stealPercent(cpuAtStart, cpuTimes());
await service.process.stop();
await Deno.remove(dir, { recursive: true }).catch(() => {});
const warnedAfter = loadWarning();
const warnedSteal = stealWarning(stealAll);

const of = (f: (r: FuncxRun) => number) => spread(runs.map(f));
const hopSpread = (key: "hops_p50_ms" | "hops_p99_ms") =>
  Object.fromEntries(
    Object.entries(spreadByKey(runs.map((r) => r[key]))).map(([k, v]) => [k, v.median]),
  );
const cpu = spreadByKey(runs.map((r) => r.cpu_us_per_task));
const memory = spreadByKey(runs.map((r) => r.memory_mib));
const result = {
  date: new Date().toISOString(),
  deno: Deno.version.deno,
  cpus: navigator.hardwareConcurrency,
  workers,
  local_manager: localManager,
  queue_type: queueType,
  direct_results: !values["no-direct-results"],
  repeat,
  load_average: { before: loadBefore, at_each_run: loads, after: loadAverage() },
  steal_pct: { whole_bench: stealAll, at_each_funcx_run: steals },
  warnings: [warnedBefore, warnedAfter, warnedSteal].filter((w) => w !== undefined),
  broker_start_s: Number(brokerS.toFixed(2)),
  endpoint_start_to_first_result_s: of((r) => r.start_to_first_result_s),
  roundtrip_ms: {
    rounds,
    p50: of((r) => r.p50),
    p95: of((r) => r.p95),
    p99: of((r) => r.p99),
    max: of((r) => r.max),
    hops_p50_ms: hopSpread("hops_p50_ms"),
    hops_p99_ms: hopSpread("hops_p99_ms"),
  },
  throughput: {
    tasks,
    batch: batchSize ?? "executor default",
    tasks_per_s: of((r) => r.tasks_per_s),
    cpu_us_per_task: cpu,
    cpu_us_per_task_all: spreadTotal(cpu),
    broker_messages_per_task: runs[0]!.broker_messages_per_task,
  },
  memory_mib: memory,
  runs,
};
const ms = (s: ReturnType<typeof spread>) => showSpread(s, " ms");
const mib = (k: string) => showSpread(memory[k]!, " MiB");
const rt = result.roundtrip_ms;
console.log(
  `\nfuncX end-to-end benchmark (FuncXExecutor, result stream; ${localManager} manager, ` +
    `${queueType} queues); ` +
    `each figure the median of ${repeat} runs, with the range\n`,
);
for (const w of result.warnings) console.log(`WARNING: ${w}\n`);
console.log("| metric | value | design target |\n|---|---|---|");
console.log(`| broker start | ${result.broker_start_s} s | ~5 s |`);
console.log(
  `| endpoint start to first result | ${
    showSpread(result.endpoint_start_to_first_result_s, " s")
  } | < 2 s |`,
);
console.log(`| round trip p50 (${rounds} sequential) | ${ms(rt.p50)} | <= Celery's p50 |`);
console.log(`| round trip p99 | ${ms(rt.p99)} | <= 5 ms |`);
const hopLine = (h: Record<string, number>) =>
  Object.entries(h).map(([k, v]) => `${k} ${v}`).join(", ");
console.log(`| round trip by hop, p50 ms from submit | ${hopLine(rt.hops_p50_ms)} | |`);
console.log(`| round trip by hop, p99 ms from submit | ${hopLine(rt.hops_p99_ms)} | |`);
console.log(
  `| throughput (${tasks} no-op tasks, ${workers} workers, batch ${batchSize ?? "default"}) | ${
    showSpread(result.throughput.tasks_per_s, "/s")
  } | >= 5,000/s and >= 5x Celery |`,
);
const bm = result.throughput.broker_messages_per_task;
if (bm) {
  console.log(
    `| broker messages per task (published / delivered) | ${bm.published} / ${bm.delivered} | |`,
  );
}
console.log(
  `| CPU per task (µs) | ${
    Object.entries(cpu).map(([k, v]) => `${k} ${showSpread(v)}`).join(", ")
  }; all ${result.throughput.cpu_us_per_task_all} | <= 400 |`,
);
console.log(
  `| CPU time the hypervisor took (steal) during the funcX runs | ${
    showSpread(spread(steals), " %")
  } | 0 % (a machine to itself) |`,
);
console.log(`| idle endpoint daemon RSS, fresh | ${mib("idle_daemon_fresh")} | <= 80 MiB |`);
console.log(
  `| idle endpoint daemon RSS, after the load | ${mib("idle_daemon_after_load")} | <= 80 MiB |`,
);
console.log(`| worker RSS | ${mib("worker")} | <= 50 MiB |`);
console.log(
  `| worker PSS (its share of the shared executable counted once) | ${mib("worker_pss")} | |`,
);
console.log(
  `| idle daemon / worker private memory (USS) | ${mib("idle_daemon_after_load_uss")} / ${
    mib("worker_uss")
  } | |`,
);
if (localManager === "process") console.log(`| manager RSS | ${mib("manager")} | |`);
const outDir = new URL("./results/", import.meta.url).pathname;
await Deno.mkdir(outDir, { recursive: true });
const celeryP50 = peerRuns.Celery ? spread(peerRuns.Celery.map((f) => f.roundtrip_ms.p50)) : null;
const chart = hopChartSvg({
  hops: rt.hops_p50_ms,
  caption:
    `${rounds} sequential no-op tasks, ${workers} workers, ${navigator.hardwareConcurrency} ` +
    `cores, median of ${repeat} runs, ${result.date.slice(0, 10)}; bench/roundtrip.ts`,
  ...(celeryP50 ? { peer: { name: "Celery", p50Ms: celeryP50.median } } : {}),
});
await Deno.writeTextFile(join(outDir, "roundtrip-hops.svg"), chart);
const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
if (!values.peers) {
  await Deno.writeTextFile(join(outDir, "roundtrip.json"), json(result));
  console.log(`\nwrote ${join(outDir, "roundtrip.json")}`);
} else {
  const peers = peersRecord(
    {
      label: `funcX, executor defaults (${localManager} manager)`,
      runs: runs.map((r) => ({
        tasks_per_s: r.tasks_per_s,
        p50_ms: r.p50,
        p95_ms: r.p95,
        p99_ms: r.p99,
      })),
      cpu: runs.map((r) => r.cpu_us_per_task),
    },
    Object.fromEntries(
      Object.entries(peerRuns).map(([name, list]) => [name, {
        label: list[0]!.label,
        runs: list.map(peerSummary),
        cpu: list.map((f) => f.throughput.cpu_us_per_task),
      }]),
    ),
  );
  console.log(
    `\nSide by side (${tasks} no-op tasks, ${workers} workers, ${rounds} rounds, ${repeat} runs ` +
      "each, interleaved)\n",
  );
  console.log(sideBySideTable(peers));
  const header = {
    date: result.date,
    cpus: result.cpus,
    workers,
    tasks,
    rounds,
    repeat,
    load_average: result.load_average,
    warnings: result.warnings,
    batch: batchSize ?? "executor default",
  };
  await Deno.writeTextFile(
    join(outDir, "roundtrip.json"),
    json({ ...result, peers, peer_runs: peerRuns }),
  );
  await Deno.writeTextFile(join(outDir, "peers.json"), json({ ...header, ...peers }));
  console.log(`\nwrote ${join(outDir, "roundtrip.json")} and ${join(outDir, "peers.json")}`);
}
