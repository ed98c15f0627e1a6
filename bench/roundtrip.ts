/**
 * End-to-end benchmark on one machine: a private broker, the real service, a real endpoint
 * (daemon, interchange, manager, Deno workers) and the SDK's `FuncXExecutor` with its AMQP result
 * stream. It measures
 * - endpoint start: from launching `funcx-endpoint start` to the first result;
 * - one task's round trip (submit, run, result on the stream), sequentially, p50/p99;
 * - throughput of no-op tasks through the executor, and the CPU each process (client, broker,
 *   service, daemon, manager, workers) spends per task meanwhile;
 * - memory (RSS) of the idle endpoint daemon, one worker and the manager, and the private part
 *   (USS) of the daemon's and a worker's.
 * It prints a table and writes `bench/results/roundtrip.json`.
 *
 * With `--peers`, Celery runs first on the same broker node with the same tasks, workers and
 * rounds (see `bench/peers/celery.ts`); a second table puts both side by side with the ratios,
 * and the JSON keeps both (under `peers`, and alone in `bench/results/peers.json`).
 *
 * Usage: `deno task bench [--tasks 20000] [--workers 2] [--rounds 300] [--batch N]
 * [--peers [--celery-prefetch 4]]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { FuncXExecutor } from "../mod.ts";
import {
  CELERY_DEFAULT_PREFETCH,
  type CeleryFigures,
  ensureCeleryInstalled,
  runCelery,
} from "./peers/celery.ts";
import { peersRecord, sideBySideTable } from "./peers/side_by_side.ts";
import { hopChartSvg } from "./hop_chart.ts";
import { cmdline, descendants, processJiffies } from "./_proc.ts";
import { residentMib } from "../endpoint/engine/worker_process.ts";
import { ensureRabbitInstalled, RabbitBroker } from "../tests/harness/rabbitmq.ts";
import {
  brokerAccess,
  clientOf,
  createVhost,
  startEndpoint,
  startService,
} from "../tests/harness/stack.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "20000" },
    workers: { type: "string", default: "2" },
    rounds: { type: "string", default: "300" },
    // The executor's own default unless given: the figure a user gets without tuning.
    batch: { type: "string" },
    peers: { type: "boolean", default: false },
    "celery-prefetch": { type: "string", default: String(CELERY_DEFAULT_PREFETCH) },
  },
});
const tasks = Number(values.tasks);
const workers = Number(values.workers);
const rounds = Number(values.rounds);
const batchSize = values.batch === undefined ? undefined : Number(values.batch);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
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

await ensureRabbitInstalled();
if (values.peers) await ensureCeleryInstalled();
const t0 = performance.now();
await using broker = await RabbitBroker.start();
const brokerS = (performance.now() - t0) / 1000;
const access = brokerAccess(broker);
let celery: CeleryFigures | undefined;
if (values.peers) {
  console.error(`Celery: ${tasks} tasks, ${workers} workers, ${rounds} rounds`);
  celery = await runCelery(broker, {
    tasks,
    workers,
    rounds,
    prefetch: Number(values["celery-prefetch"]),
  });
  console.error("funcX: same figures");
}
const dir = await Deno.makeTempDir({ prefix: "funcx-bench-" });
const amqpUrl = await createVhost(access, "bench");
const service = await startService({ dir, amqpUrl, broker: access });
const client = clientOf(service);
const noop = await client.registerFunction(() => null);

const epStart = performance.now();
const endpoint = await startEndpoint({ service, dir, workers });
const fx = new FuncXExecutor({
  endpointId: endpoint.endpointId,
  client,
  ...(batchSize === undefined ? {} : { batchSize }),
});
await fx.submitToRegisteredFunction(noop);
const startToFirstS = (performance.now() - epStart) / 1000;
const daemonPid = endpoint.process.child.pid;
await new Promise((r) => setTimeout(r, 1000));
const daemonFreshRss = rssMiB(daemonPid);

// Warm-up, as the Celery side gets: 20 unmeasured round trips (connections, first compiles).
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
/** Median milliseconds from the submit call to each state, then to the result in hand. */
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
    Object.entries(hops).map(([k, v]) => [k, Number(pct(v.sort((a, b) => a - b), p).toFixed(2))]),
  );
const hopMs = hopPct(0.5);
/** The same at p99: which hop the slow round trips lose their time in. */
const hopP99Ms = hopPct(0.99);

// Throughput: all tasks submitted at once, drained in batches. The CPU each process spends on
// them says where the time goes (on a machine with few cores, CPU is what bounds throughput).
const brokerPids = [...Deno.readDirSync("/proc")].map((e) => Number(e.name))
  .filter((p) => p > 0 && cmdline(p).includes("beam.smp") && cmdline(p).includes(broker.info.dir));
const endpointPids = descendants(daemonPid);
const parts: Record<string, number[]> = {
  client: [Deno.pid],
  broker: brokerPids,
  service: [service.process.child.pid],
  daemon: [daemonPid],
  manager: endpointPids.filter((p) => cmdline(p).includes("manager_main")),
  workers: endpointPids.filter((p) => cmdline(p).includes("worker_main")),
};
const cpuNow = () =>
  Object.fromEntries(
    Object.entries(parts).map(([k, pids]) => [k, pids.reduce((n, p) => n + cpuS(p), 0)]),
  );
const messagesBefore = await brokerMessages();
const cpuBefore = cpuNow();
const s = performance.now();
const futures = Array.from({ length: tasks }, () => fx.submitToRegisteredFunction(noop));
await Promise.all(futures);
const totalS = (performance.now() - s) / 1000;
const cpuAfter = cpuNow();
/** Microseconds of CPU per task, by process. */
const cpuPerTaskUs = Object.fromEntries(
  Object.keys(parts).map((k) => [k, Math.round((cpuAfter[k]! - cpuBefore[k]!) / tasks * 1e6)]),
);

// Memory: let the endpoint go idle, then read the daemon and its workers.
await new Promise((r) => setTimeout(r, 2000));
const workerPids = descendants(daemonPid).filter((p) => cmdline(p).includes("worker_main"));
const managerPids = descendants(daemonPid).filter((p) => cmdline(p).includes("manager_main"));
const daemonRss = rssMiB(daemonPid);
const daemonUss = ussMiB(daemonPid);
const maxOf = (pids: number[], f: (pid: number) => number) =>
  pids.length ? Math.max(...pids.map(f)) : 0;
const workerRss = maxOf(workerPids, rssMiB);
const workerUss = maxOf(workerPids, ussMiB);
const workerPss = maxOf(workerPids, pssMiB);
const messagesAfter = await brokerMessages();
/** Broker messages per task during the throughput run (both directions, all hops). */
const messagesPerTask = {
  published: Number(((messagesAfter.published - messagesBefore.published) / tasks).toFixed(3)),
  delivered: Number(((messagesAfter.delivered - messagesBefore.delivered) / tasks).toFixed(3)),
};
const managerRss = maxOf(managerPids, rssMiB);

await fx.shutdown();
await endpoint.process.stop();
await service.process.stop();
await Deno.remove(dir, { recursive: true }).catch(() => {});

const result = {
  date: new Date().toISOString(),
  deno: Deno.version.deno,
  cpus: navigator.hardwareConcurrency,
  workers,
  broker_start_s: Number(brokerS.toFixed(2)),
  endpoint_start_to_first_result_s: Number(startToFirstS.toFixed(2)),
  roundtrip_ms: {
    rounds,
    p50: Number(pct(latencies, 0.5).toFixed(2)),
    p99: Number(pct(latencies, 0.99).toFixed(2)),
    max: Number(latencies[latencies.length - 1]!.toFixed(2)),
    hops_p50_ms: hopMs,
    hops_p99_ms: hopP99Ms,
  },
  throughput: {
    tasks,
    batch: batchSize ?? "executor default",
    tasks_per_s: Math.round(tasks / totalS),
    total_s: Number(totalS.toFixed(2)),
    cpu_us_per_task: cpuPerTaskUs,
    broker_messages_per_task: messagesPerTask,
  },
  memory_mib: {
    idle_daemon_fresh: daemonFreshRss,
    idle_daemon_after_load: daemonRss,
    idle_daemon_after_load_uss: daemonUss,
    worker: workerRss,
    worker_uss: workerUss,
    worker_pss: workerPss,
    manager: managerRss,
  },
};
console.log("\nfuncX end-to-end benchmark (FuncXExecutor, result stream)\n");
console.log("| metric | value | design target |\n|---|---|---|");
console.log(`| broker start | ${result.broker_start_s} s | ~5 s |`);
console.log(
  `| endpoint start to first result | ${result.endpoint_start_to_first_result_s} s | < 2 s |`,
);
console.log(
  `| round trip p50 (${rounds} sequential) | ${result.roundtrip_ms.p50} ms | <= Celery's p50 |`,
);
console.log(`| round trip p99 | ${result.roundtrip_ms.p99} ms | <= 5 ms |`);
console.log(
  `| round trip by hop, p50 ms from submit | ${
    Object.entries(hopMs).map(([k, v]) => `${k} ${v}`).join(", ")
  } | |`,
);
console.log(
  `| round trip by hop, p99 ms from submit | ${
    Object.entries(hopP99Ms).map(([k, v]) => `${k} ${v}`).join(", ")
  } | |`,
);
console.log(
  `| throughput (${tasks} no-op tasks, ${workers} workers, batch ${
    batchSize ?? "default"
  }) | ${result.throughput.tasks_per_s}/s | >= 5,000/s and >= 5x Celery |`,
);
console.log(
  `| broker messages per task (published / delivered) | ${messagesPerTask.published} / ${messagesPerTask.delivered} | |`,
);
console.log(
  `| CPU per task (µs) | ${
    Object.entries(cpuPerTaskUs).map(([k, v]) => `${k} ${v}`).join(", ")
  } | |`,
);
console.log(`| idle endpoint daemon RSS, fresh | ${daemonFreshRss} MiB | <= 80 MiB |`);
console.log(`| idle endpoint daemon RSS, after the load | ${daemonRss} MiB | <= 80 MiB |`);
console.log(`| worker RSS | ${workerRss} MiB | <= 50 MiB |`);
console.log(
  `| worker PSS (its share of the shared executable counted once) | ${workerPss} MiB | |`,
);
console.log(`| idle daemon / worker private memory (USS) | ${daemonUss} / ${workerUss} MiB | |`);
console.log(`| manager RSS | ${managerRss} MiB | |`);
const outDir = new URL("./results/", import.meta.url).pathname;
await Deno.mkdir(outDir, { recursive: true });
const chart = hopChartSvg({
  hops: hopMs,
  caption:
    `${rounds} sequential no-op tasks, ${workers} workers, ${navigator.hardwareConcurrency} ` +
    `cores, ${result.date.slice(0, 10)}; bench/roundtrip.ts`,
  ...(celery ? { peer: { name: "Celery", p50Ms: celery.roundtrip_ms.p50 } } : {}),
});
await Deno.writeTextFile(join(outDir, "roundtrip-hops.svg"), chart);
const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
if (celery === undefined) {
  await Deno.writeTextFile(join(outDir, "roundtrip.json"), json(result));
  console.log(`\nwrote ${join(outDir, "roundtrip.json")}`);
} else {
  const peers = peersRecord({
    tasks_per_s: result.throughput.tasks_per_s,
    p50_ms: result.roundtrip_ms.p50,
    p95_ms: Number(pct(latencies, 0.95).toFixed(2)),
    p99_ms: result.roundtrip_ms.p99,
  }, celery);
  console.log(`\nSide by side (${tasks} no-op tasks, ${workers} workers, ${rounds} rounds)\n`);
  console.log(sideBySideTable(peers));
  const header = {
    date: result.date,
    cpus: result.cpus,
    workers,
    tasks,
    rounds,
    batch: batchSize ?? "executor default",
  };
  await Deno.writeTextFile(join(outDir, "roundtrip.json"), json({ ...result, peers }));
  await Deno.writeTextFile(join(outDir, "peers.json"), json({ ...header, ...peers }));
  console.log(`\nwrote ${join(outDir, "roundtrip.json")} and ${join(outDir, "peers.json")}`);
}
