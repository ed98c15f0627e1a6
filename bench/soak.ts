/**
 * The soak: `deno task soak --minutes N` runs a real stack (a private RabbitMQ node, the service
 * on SQLite with a short task TTL, an endpoint started with the CLI) under mixed work at a steady
 * rate for N minutes, and checks that nothing grows and nothing is lost.
 *
 * The work: no-op tasks, 1 s tasks, failing tasks, 1 MiB results and cancelled tasks, in a fixed
 * rotation; each minute the executor moves to a new task group and a separate process reloads
 * the previous one (`reloadTasks()`) and checks it sees every outcome; the endpoint is restarted
 * every 10 minutes (every N/2 minutes in runs shorter than 20). At every sample (each minute, or
 * 12 samples in runs shorter than 12 minutes) it records each process's resident memory and open
 * file descriptors (service, endpoint daemon, its workers together, this process), the store's
 * size on disk and task rows, and the broker's queue depths and memory.
 *
 * The verdict, over the samples after the warm-up (the first third of the run, at most 10
 * minutes): no process's memory grows faster than 5 MiB an hour (growth under 8 MiB in all is
 * taken as the garbage collector's swing), descriptors stay within 10 of where they were, queue
 * depths stay flat, the store holds no more tasks than its TTL lets it, and every future settled
 * with its task's own outcome. A process's memory is held to 5 MiB/h only over a window of 20
 * minutes or more: over a shorter one (any window of a short run, and each 10-minute life of the
 * endpoint daemon, restarted by the soak) a V8 heap still settling cannot be told from a leak,
 * so it is only held under 64 MiB of growth, and the report says which were judged.
 *
 * Writes `bench/results/soak-<minutes>m.json` and `.svg` (memory over time) and prints a table.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DatabaseSync } from "node:sqlite";
import { FuncXExecutor, type FuncXFuture, TaskExecutionFailed } from "../mod.ts";
import { RabbitBroker } from "../tests/harness/rabbitmq.ts";
import { denoRunArgs } from "../tests/harness/process.ts";
import {
  brokerAccess,
  clientOf,
  createVhost,
  type EndpointHandle,
  startEndpoint,
  startService,
} from "../tests/harness/stack.ts";
import { descendants } from "./_proc.ts";
import { soakChart } from "./soak_chart.ts";
import { STREAM_QUEUE_IDLE_MS } from "../service/routes/tasks.ts";

/** The one entry of the queue depths that sums every result stream's queue. */
const STREAMS = "result streams";

/** Options of {@linkcode runSoak}. */
export interface SoakOptions {
  /** Length of the run. */
  minutes: number;
  /** Tasks submitted per second. @default 4 */
  rate?: number;
  /** Where the JSON and the SVG go. @default "bench/results" next to this file */
  outDir?: string;
  /** Progress lines. @default console.error */
  log?: (line: string) => void;
}

/** One sample of every process and of the broker and the store. */
export interface SoakSample {
  /** Seconds since the work started. */
  t: number;
  /** Resident memory in MiB by process role. */
  rssMiB: Record<string, number>;
  /** Open file descriptors by process role. */
  fds: Record<string, number>;
  /** Which incarnation of the endpoint daemon (and its workers) the sample is of. */
  endpointRun: number;
  storeBytes: number;
  storeTasks: number;
  /** Tasks submitted in the TTL (and purge interval) before this sample: the store's bound. */
  storeBound: number;
  /** Ready + unacked messages by queue. */
  queues: Record<string, number>;
  brokerMemMiB: number;
}

/** What a soak found. */
export interface SoakReport {
  minutes: number;
  rate: number;
  taskTtlS: number;
  warmupS: number;
  submitted: Record<string, number>;
  wrong: string[];
  reloads: { runs: number; problems: string[] };
  endpointRestarts: number;
  /**
   * Memory growth after the warm-up by role: MiB per hour, MiB over the window, and whether the
   * window was long enough (20 minutes) to hold it to 5 MiB/h.
   */
  growth: Record<string, { mibPerHour: number; mib: number; judged: boolean }>;
  samples: SoakSample[];
  problems: string[];
  passed: boolean;
}

type Kind = "noop" | "sleep" | "fail" | "big" | "cancel";
const ROTATION: Kind[] = ["noop", "sleep", "noop", "fail", "noop", "cancel", "noop", "sleep"];
/** One task in this many returns 1 MiB. */
const BIG_EVERY = 40;
const MiB = 1024 * 1024;
const SERVICE_PURGE_S = 60;
/** A window shorter than this cannot tell 5 MiB/h of leak from the heap's own warm-up. */
const JUDGED_WINDOW_S = 20 * 60;
/** What a process may grow in a window too short to judge, before it counts as a problem. */
const SHORT_CEILING_MIB = 64;

const tasks = {
  noop: (n: number) => n,
  sleep: async (n: number) => {
    await new Promise((r) => setTimeout(r, 1000));
    return n;
  },
  fail: (n: number) => {
    throw new Error(`soak failure ${n}`);
  },
  big: (n: number) => String(n).padEnd(1024 * 1024, "x"),
};

/** Runs the soak and returns its report (also written to `outDir`). */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const minutes = options.minutes;
  if (!(minutes > 0)) throw new RangeError(`Invalid --minutes "${minutes}": give a number > 0`);
  const rate = options.rate ?? 4;
  const say = options.log ?? ((l: string) => console.error(l));
  const totalS = minutes * 60;
  const sampleS = Math.min(60, totalS / 12);
  const warmupS = Math.min(600, totalS / 3);
  const restartS = minutes >= 20 ? 600 : totalS / 2;
  const groupS = Math.min(60, totalS / 6);
  const taskTtlS = Math.max(60, Math.min(600, Math.round(totalS / 4)));
  const outDir = options.outDir ?? new URL("./results/", import.meta.url).pathname;

  await using broker = await RabbitBroker.start();
  const access = brokerAccess(broker);
  const dir = await Deno.makeTempDir({ prefix: "funcx-soak-" });
  const vhost = "soak";
  const amqpUrl = await createVhost(access, vhost);
  const service = await startService({
    dir,
    amqpUrl,
    broker: access,
    args: ["--task-ttl", String(taskTtlS)],
  });
  let endpoint: EndpointHandle = await startEndpoint({ service, dir, workers: 4 });
  let endpointRun = 1;
  const client = clientOf(service);
  const fx = new FuncXExecutor({ endpointId: endpoint.endpointId, client });
  const submitted: Record<string, number> = {};
  const wrong: string[] = [];
  const reloadProblems: string[] = [];
  let reloadRuns = 0;
  const pending = new Set<Promise<void>>();
  const submitTimes: number[] = [];
  const samples: SoakSample[] = [];
  const started = performance.now();
  const now = () => (performance.now() - started) / 1000;
  const reloads: Promise<void>[] = [];

  const check = (kind: Kind, n: number, f: FuncXFuture<unknown>) => {
    const p = f.then(
      (v) => {
        const ok = kind === "big"
          ? typeof v === "string" && v.length === MiB && v.startsWith(String(n))
          : kind === "noop" || kind === "sleep" || kind === "cancel"
          ? v === n
          : false;
        if (!ok) wrong.push(`${kind} ${n}: got ${String(v).slice(0, 40)}`);
      },
      (err) => {
        const ok = kind === "fail"
          ? err instanceof TaskExecutionFailed && err.remote.message === `soak failure ${n}`
          : kind === "cancel" && f.state === "cancelled";
        if (!ok) wrong.push(`${kind} ${n}: ${String(err).slice(0, 200)}`);
      },
    );
    const tracked = p.finally(() => pending.delete(tracked));
    pending.add(tracked);
  };

  const reloadGroup = (group: string) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: denoRunArgs("tests/chaos/attach_main.ts", [endpoint.endpointId, group]),
      env: service.env,
      stdout: "piped",
      stderr: "null",
    }).output().then((out) => {
      reloadRuns++;
      const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
      const done = lines.map((l) =>
        JSON.parse(l) as { event: string; tasks: number; settled: number }
      )
        .find((m) => m.event === "done");
      if (!out.success || !done) reloadProblems.push(`reload of ${group} exited ${out.code}`);
      else if (done.settled !== done.tasks) {
        reloadProblems.push(`reload of ${group}: ${done.settled} of ${done.tasks} settled`);
      }
    });
    reloads.push(child);
  };

  const sample = async () => {
    const ep = endpoint.process.child.pid;
    const workers = descendants(ep);
    const rssMiB: Record<string, number> = {
      service: rss(service.process.child.pid),
      endpoint: rss(ep),
      workers: workers.reduce((a, p) => a + rss(p), 0),
      sdk: Deno.memoryUsage().rss / MiB,
    };
    const fds: Record<string, number> = {
      service: fdCount(service.process.child.pid),
      endpoint: fdCount(ep),
      workers: workers.reduce((a, p) => a + fdCount(p), 0),
      sdk: fdCount(Deno.pid),
    };
    const t = now();
    const horizon = t - taskTtlS - 2 * SERVICE_PURGE_S;
    const storeBound = submitTimes.filter((s) => s >= horizon).length;
    const { queues, memMiB } = await brokerState(access, vhost);
    const s: SoakSample = {
      t: Math.round(t),
      rssMiB: round(rssMiB),
      fds,
      endpointRun,
      storeBytes: storeBytes(service.dbPath),
      storeTasks: storeTasks(service.dbPath),
      storeBound,
      queues,
      brokerMemMiB: Math.round(memMiB * 10) / 10,
    };
    samples.push(s);
    say(
      `soak ${s.t}s: rss ${JSON.stringify(s.rssMiB)} fds ${JSON.stringify(s.fds)} store ` +
        `${(s.storeBytes / MiB).toFixed(1)} MiB ${s.storeTasks} tasks (bound ${storeBound}) ` +
        `queues ${JSON.stringify(queues)} broker ${s.brokerMemMiB} MiB`,
    );
  };

  try {
    let i = 0;
    let nextSample = 0;
    let nextGroup = groupS;
    let nextRestart = restartS;
    let restarts = 0;
    while (now() < totalS) {
      const t = now();
      if (t >= nextSample) {
        nextSample += sampleS;
        await sample();
      }
      if (t >= nextGroup) {
        nextGroup += groupS;
        const previous = fx.taskGroupId;
        fx.taskGroupId = crypto.randomUUID();
        reloadGroup(previous);
      }
      if (t >= nextRestart && t < totalS - 30) {
        nextRestart += restartS;
        restarts++;
        await endpoint.process.stop(30);
        endpoint = await startEndpoint({ service, dir, workers: 4 });
        endpointRun++;
        say(`soak ${Math.round(now())}s: endpoint restarted (${restarts})`);
      }
      const kind: Kind = i % BIG_EVERY === BIG_EVERY - 1 ? "big" : ROTATION[i % ROTATION.length]!;
      const n = i++;
      submitted[kind] = (submitted[kind] ?? 0) + 1;
      submitTimes.push(now());
      const f = kind === "cancel"
        ? fx.submit(tasks.sleep, n)
        : fx.submit(tasks[kind] as (n: number) => unknown, n);
      check(kind, n, f as FuncXFuture<unknown>);
      if (kind === "cancel") setTimeout(() => f.cancel(), 200);
      const due = started + (i / rate) * 1000;
      if (due > performance.now()) {
        await new Promise((r) => setTimeout(r, due - performance.now()));
      }
    }
    const drainBy = Date.now() + 120_000;
    while (pending.size > 0 && Date.now() < drainBy) await new Promise((r) => setTimeout(r, 200));
    await sample();
    await Promise.all(reloads);
    const report = verdict({
      minutes,
      rate,
      taskTtlS,
      warmupS,
      submitted,
      wrong: [...wrong, ...(pending.size > 0 ? [`${pending.size} futures still waiting`] : [])],
      reloads: { runs: reloadRuns, problems: reloadProblems },
      endpointRestarts: restarts,
      samples,
    });
    await Deno.mkdir(outDir, { recursive: true });
    const base = join(outDir, `soak-${minutes}m`);
    await Deno.writeTextFile(`${base}.json`, JSON.stringify(report, null, 2) + "\n");
    await Deno.writeTextFile(`${base}.svg`, soakChart(report));
    say(`soak: wrote ${base}.json and ${base}.svg`);
    return report;
  } finally {
    await fx.shutdown({ wait: false }).catch(() => {});
    await endpoint.process.stop(10).catch(() => {});
    await service.process.stop(10).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Judges the samples after the warm-up (see the module doc). */
export function verdict(r: Omit<SoakReport, "growth" | "problems" | "passed">): SoakReport {
  const problems: string[] = [];
  const after = r.samples.filter((s) => s.t >= r.warmupS);
  const growth: SoakReport["growth"] = {};
  if (after.length < 2) problems.push(`only ${after.length} samples after the warm-up`);
  const roles = Object.keys(r.samples[0]?.rssMiB ?? {});
  for (const role of roles) {
    // The endpoint and its workers start over at each restart: judge each run apart.
    const runs = role === "endpoint" || role === "workers"
      ? [...new Set(after.map((s) => s.endpointRun))].map((k) =>
        after.filter((s) => s.endpointRun === k)
      )
      : [after];
    let worst = { mibPerHour: 0, mib: 0, judged: false };
    for (const run of runs.filter((x) => x.length >= 2)) {
      const g = trend(run.map((s) => [s.t, s.rssMiB[role]!]));
      const judged = run[run.length - 1]!.t - run[0]!.t >= JUDGED_WINDOW_S;
      if (judged && g.mibPerHour > 5 && g.mib > 8) {
        problems.push(
          `${role} memory grows ${g.mibPerHour.toFixed(1)} MiB/h ` +
            `(${g.mib.toFixed(1)} MiB after the warm-up)`,
        );
      } else if (!judged && g.mib > SHORT_CEILING_MIB) {
        problems.push(`${role} memory grew ${g.mib.toFixed(1)} MiB in a short window`);
      }
      if (g.mibPerHour > worst.mibPerHour || !worst.judged && judged) worst = { ...g, judged };
    }
    growth[role] = worst;
    const fdRuns = runs.filter((x) => x.length >= 2);
    for (const run of fdRuns) {
      const first = run[0]!.fds[role]!;
      const most = Math.max(...run.map((s) => s.fds[role]!));
      if (most > first + 10) {
        problems.push(`${role} file descriptors grew from ${first} to ${most}`);
      }
    }
  }
  if (after.length >= 2) {
    // The queues that hold work (task queues, results) must stay flat from point to point.
    const work = (s: SoakSample) =>
      Object.entries(s.queues).reduce((a, [k, v]) => k === STREAMS ? a : a + v, 0);
    const first = work(after[0]!);
    const last = work(after[after.length - 1]!);
    if (last > Math.max(100, 2 * first)) {
      problems.push(`queue depths grew from ${first} to ${last} messages`);
    }
    // Result streams' queues hold copies in flight to readers, and those of exited readers until
    // they expire: their depth swings with the work, so what must not grow is its level, the
    // mean of the last third of the samples against the first third's. An exited reader's queue
    // collects results for as long as the service lets it outlive its reader before it expires,
    // so the level may reach that long of results; with results in one broker hop (the default)
    // the copies on their way to a reader wait in its queue, not in `results`.
    const streams = (s: SoakSample) => s.queues[STREAMS] ?? 0;
    const third = Math.max(1, Math.floor(after.length / 3));
    const mean = (xs: SoakSample[]) => xs.reduce((a, x) => a + streams(x), 0) / xs.length;
    const early = mean(after.slice(0, third));
    const late = mean(after.slice(-third));
    if (late > Math.max(r.rate * (STREAM_QUEUE_IDLE_MS / 1000), 2 * early)) {
      problems.push(
        `result stream queues grew from ${early.toFixed(0)} to ${late.toFixed(0)} messages ` +
          `on average`,
      );
    }
  }
  for (const s of r.samples) {
    if (s.storeTasks > s.storeBound + 50) {
      problems.push(
        `the store held ${s.storeTasks} tasks at ${s.t} s, more than the ${s.storeBound} ` +
          `submitted within its TTL and purge interval`,
      );
      break;
    }
  }
  if (r.wrong.length > 0) {
    problems.push(`${r.wrong.length} tasks ended wrongly: ${r.wrong.slice(0, 5).join("; ")}`);
  }
  problems.push(...r.reloads.problems);
  return { ...r, growth, problems, passed: problems.length === 0 };
}

/**
 * Memory growth of `points` ([seconds, MiB]): the least-squares slope in MiB/h, and the growth
 * it means over the points' span, in MiB.
 */
export function trend(points: Array<[number, number]>): { mibPerHour: number; mib: number } {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  const perS = den === 0 ? 0 : num / den;
  const span = points[n - 1]![0] - points[0]![0];
  return { mibPerHour: perS * 3600, mib: perS * span };
}

function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function fdCount(pid: number): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return 0;
  }
}

function round(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}

function storeBytes(db: string): number {
  let total = 0;
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      total += Deno.statSync(db + suffix).size;
    } catch {
      // no such file (yet)
    }
  }
  return total;
}

function storeTasks(db: string): number {
  const conn = new DatabaseSync(db, { readOnly: true });
  try {
    conn.exec("PRAGMA busy_timeout = 5000");
    return Number((conn.prepare("SELECT count(*) AS n FROM tasks").get() as { n: number }).n);
  } finally {
    conn.close();
  }
}

async function brokerState(
  access: ReturnType<typeof brokerAccess>,
  vhost: string,
): Promise<{ queues: Record<string, number>; memMiB: number }> {
  const get = async (path: string) => {
    const res = await fetch(`${access.managementUrl}/api/${path}`, {
      headers: { authorization: `Basic ${btoa(`${access.user}:${access.password}`)}` },
    });
    if (!res.ok) throw new Error(`Management API ${path} answered ${res.status}`);
    return await res.json();
  };
  const queues: Record<string, number> = {};
  for (
    const q of await get(`queues/${encodeURIComponent(vhost)}`) as Array<
      { name: string; messages?: number }
    >
  ) {
    // Result streams' queues have random names: one entry for all of them.
    const name = q.name.startsWith("user-") ? STREAMS : q.name;
    queues[name] = (queues[name] ?? 0) + (q.messages ?? 0);
  }
  const nodes = await get("nodes") as Array<{ mem_used?: number }>;
  return { queues, memMiB: (nodes[0]?.mem_used ?? 0) / MiB };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      minutes: { type: "string", default: "60" },
      rate: { type: "string", default: "4" },
      out: { type: "string" },
    },
  });
  const report = await runSoak({
    minutes: Number(values.minutes),
    rate: Number(values.rate),
    ...(values.out ? { outDir: values.out } : {}),
  });
  const growth = Object.entries(report.growth)
    .map(([role, g]) =>
      `${role} ${g.mibPerHour.toFixed(1)} MiB/h${g.judged ? "" : " (not judged)"}`
    )
    .join(", ");
  console.log(
    `soak ${report.minutes} min at ${report.rate}/s: ${JSON.stringify(report.submitted)}`,
  );
  console.log(`memory after warm-up: ${growth}`);
  console.log(`endpoint restarts ${report.endpointRestarts}, reloads ${report.reloads.runs}`);
  console.log(report.passed ? "soak: passed" : `soak: FAILED: ${report.problems.join(" | ")}`);
  Deno.exit(report.passed ? 0 : 1);
}
