/**
 * How fast a wave of tasks reaches every worker of a pool that has just started: the engine's
 * `WorkerPool` alone (no daemon, service or broker), `--workers` workers from the same bundled
 * command line the endpoint uses, then `--waves` waves of one sleeping task per worker, each
 * after the pool has been idle for `--idle-ms`. For each wave it prints, from the moment its
 * tasks were handed to the pool, when the first, the median and the last worker started its task:
 * the first wave shows what a worker's first task costs beyond the others (what the warm-up task
 * each worker runs before it counts as ready is for; see `WARM_UP_TASK_ID` in
 * `endpoint/engine/frames.ts`). It also prints the pool's start: its wall time and the machine's
 * user and system CPU over it. Writes `bench/results/waves.json`.
 *
 * Usage: `deno run -A bench/waves.ts [--workers 128] [--waves 4] [--idle-ms 500]
 * [--task-ms 300]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { WorkerPool } from "../endpoint/engine/worker_pool.ts";
import { workerCommand } from "../endpoint/engine/worker_bundle.ts";
import { permissionFlags } from "../endpoint/engine/command.ts";
import { packArgs, packBuffers, type ResultMessage, serialize } from "../sdk/protocol/mod.ts";
import { cpuTimes, percentile, round2 } from "./_repeat.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    workers: { type: "string", default: "128" },
    waves: { type: "string", default: "4" },
    "idle-ms": { type: "string", default: "500" },
    "task-ms": { type: "string", default: "300" },
  },
});
const options = {
  workers: Number(values.workers),
  waves: Number(values.waves),
  idleMs: Number(values["idle-ms"]),
  taskMs: Number(values["task-ms"]),
};
for (const [name, v] of Object.entries(options)) {
  if (!Number.isInteger(v) || v < (name === "idleMs" || name === "taskMs" ? 0 : 1)) {
    throw new RangeError(`Invalid --${name}: ${v}, expected a whole number`);
  }
}

const flags = permissionFlags({});
flags.push("--v8-flags=--expose-gc"); // as the manager starts them
const command = await workerCommand(flags);
const logDir = await Deno.makeTempDir({ prefix: "funcx-waves-" });
const results: ResultMessage[] = [];
const cpu0 = cpuTimes();
const t0 = performance.now();
const pool = await WorkerPool.start({
  workers: options.workers,
  command,
  logDir,
  onResult: (r) => results.push(r),
  readyWorkers: options.workers,
  startTimeoutS: 600,
});
const startS = (performance.now() - t0) / 1000;
const cpu1 = cpuTimes();
/** Clock ticks a second (`USER_HZ`). */
const HZ = 100;
const start = {
  wall_s: round2(startS),
  user_cpu_s: round2((cpu1.user - cpu0.user) / HZ),
  system_cpu_s: round2((cpu1.system - cpu0.system) / HZ),
};

const sleep = async (ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return ms;
};
const buffer = packBuffers([serialize(sleep)]) + packArgs([options.taskMs]);
const epochNs = () => (performance.timeOrigin + performance.now()) * 1e6;
const waves: Array<{ wave: number; first_ms: number; p50_ms: number; last_ms: number }> = [];
try {
  for (let wave = 0; wave < options.waves; wave++) {
    await new Promise((r) => setTimeout(r, options.idleMs));
    results.length = 0;
    const handed = epochNs();
    for (let i = 0; i < options.workers; i++) {
      pool.submit({ task_id: `wave${wave}-${i}`, buffer, statuses: [] });
    }
    while (results.length < options.workers) await new Promise((r) => setTimeout(r, 20));
    const starts = results.map((r) => {
      const s = r.task_statuses?.find((x) => x.state === "execution-start");
      if (!s) throw new Error(`Task ${r.task_id} has no execution-start`);
      return (Number(s.timestamp) - handed) / 1e6;
    }).sort((a, b) => a - b);
    waves.push({
      wave: wave + 1,
      first_ms: round2(starts[0]!),
      p50_ms: round2(percentile(starts, 0.5)),
      last_ms: round2(starts[starts.length - 1]!),
    });
  }
} finally {
  await pool.close();
  await Deno.remove(logDir, { recursive: true }).catch(() => {});
}

console.log(
  `A pool of ${options.workers} workers on ${navigator.hardwareConcurrency} cores: up in ` +
    `${start.wall_s} s (machine CPU: user ${start.user_cpu_s} s, system ${start.system_cpu_s} s)`,
);
console.log(
  `\nWaves of ${options.workers} tasks of ${options.taskMs} ms, each after ${options.idleMs} ms ` +
    "idle; ms from handing them to the pool until workers start them:\n",
);
console.log("| wave | first | p50 | last |\n|---|---|---|---|");
for (const w of waves) console.log(`| ${w.wave} | ${w.first_ms} | ${w.p50_ms} | ${w.last_ms} |`);
const outDir = new URL("./results/", import.meta.url).pathname;
await Deno.mkdir(outDir, { recursive: true });
const out = join(outDir, "waves.json");
await Deno.writeTextFile(
  out,
  JSON.stringify({ date: new Date().toISOString(), ...options, start, waves }, null, 2) + "\n",
);
console.log(`\nwrote ${out}`);
