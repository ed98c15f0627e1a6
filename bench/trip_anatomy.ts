/**
 * Where one task's round trip spends its time, typical and slow: sequential round trips through
 * the real stack (private broker, service, endpoint with 2 workers, the executor's defaults), each
 * cut at the submit request (its start and its answer, seen by wrapping `fetch`) and at the
 * states the endpoint records on the same clock. It prints each point's p50 and p90 from the
 * submit call, then, for the slowest 5 % of trips, the median and mean of each gap between
 * points: which leg the tail comes from. Writes `bench/results/trip_anatomy.json`, with every
 * trip's points.
 *
 * Usage: `deno run -A bench/trip_anatomy.ts [--rounds 1000] [--queue-type auto|quorum|classic]
 * [--no-direct-results]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { FuncXExecutor } from "../mod.ts";
import { clientOf, declaredQueueType, startStack } from "../tests/harness/stack.ts";
import { percentile, round2 } from "./_repeat.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "1000" },
    "queue-type": { type: "string", default: "auto" },
    "no-direct-results": { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 20) {
  throw new RangeError(`Invalid --rounds "${values.rounds}": expected a whole number >= 20`);
}
const queueType = values["queue-type"];
if (queueType !== "auto" && queueType !== "quorum" && queueType !== "classic") {
  throw new RangeError(`Invalid --queue-type "${queueType}": auto, quorum or classic`);
}

/** `obj` with `f` applied to each value. */
function mapValues<T, U>(obj: Partial<Record<string, T>>, f: (v: T) => U): Record<string, U> {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, f(v as T)]));
}

const wallNow = () => performance.timeOrigin + performance.now();
/** Start and end (epoch ms) of each `POST /v2/submit`, in order. */
const submits: Array<{ start: number; end: number }> = [];
const plainFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  if (!url.endsWith("/v2/submit")) return await plainFetch(input, init);
  const start = wallNow();
  const res = await plainFetch(input, init);
  submits.push({ start, end: wallNow() });
  return res;
};

/** The points of a trip, in order, and the state names the endpoint records them under. */
const STATES = ["received", "running", "execution-start", "execution-end"] as const;
const POINTS = ["submit sent", "submit answered", ...STATES, "result in hand"] as const;
type Point = typeof POINTS[number];

const stack = await startStack({
  serviceArgs: [
    "--queue-type",
    queueType,
    ...(values["no-direct-results"] ? ["--no-direct-results"] : []),
  ],
});
try {
  /** The type the service declared its queues as (`auto` resolves at its start). */
  const declared = declaredQueueType(await stack.service.process.log()) ?? queueType;
  const client = clientOf(stack.service);
  const noop = await client.registerFunction(() => 0);
  await using fx = new FuncXExecutor({ endpointId: stack.endpoint.endpointId, client });
  for (let i = 0; i < 30; i++) await fx.submitToRegisteredFunction(noop);
  const trips: Array<{ taskId: string; start: number; at: Partial<Record<Point, number>> }> = [];
  for (let i = 0; i < rounds; i++) {
    const start = wallNow();
    const f = fx.submitToRegisteredFunction(noop);
    await f;
    const end = wallNow();
    const submit = submits.at(-1)!;
    trips.push({
      taskId: f.taskId!,
      start,
      at: {
        "submit sent": submit.start - start,
        "submit answered": submit.end - start,
        "result in hand": end - start,
      },
    });
  }
  for (const trip of trips) {
    const info = await client.getTask(trip.taskId) as unknown as {
      task_transitions?: Array<{ state: string; timestamp: string }>;
    };
    for (const t of info.task_transitions ?? []) {
      if ((STATES as readonly string[]).includes(t.state)) {
        trip.at[t.state as Point] = Number(BigInt(t.timestamp) / 1000n) / 1000 - trip.start;
      }
    }
  }
  const points = Object.fromEntries(POINTS.map((p) => {
    const v = trips.map((t) => t.at[p]).filter((x) => x !== undefined).sort((a, b) => a - b);
    return [p, {
      p50: round2(percentile(v, 0.5)),
      p90: round2(percentile(v, 0.9)),
      p99: round2(percentile(v, 0.99)),
    }];
  }));
  const slow = [...trips].sort((a, b) => b.at["result in hand"]! - a.at["result in hand"]!)
    .slice(0, Math.max(1, Math.ceil(trips.length / 20)));
  const gaps: Record<string, { median: number; mean: number; typical: number }> = {};
  for (let k = 1; k < POINTS.length; k++) {
    const [a, b] = [POINTS[k - 1]!, POINTS[k]!];
    const gap = (t: typeof trips[number]) => (t.at[b] ?? NaN) - (t.at[a] ?? NaN);
    const s = slow.map(gap).filter(Number.isFinite).sort((x, y) => x - y);
    const all = trips.map(gap).filter(Number.isFinite).sort((x, y) => x - y);
    gaps[`${a} → ${b}`] = {
      median: round2(percentile(s, 0.5)),
      mean: round2(s.reduce((n, x) => n + x, 0) / s.length),
      typical: round2(percentile(all, 0.5)),
    };
  }
  console.log(`${rounds} sequential round trips (${declared} queues), ms from the submit call:`);
  console.log("| point | p50 | p90 | p99 |\n| --- | --- | --- | --- |");
  for (const [p, v] of Object.entries(points)) {
    console.log(`| ${p} | ${v.p50} | ${v.p90} | ${v.p99} |`);
  }
  console.log(`\nThe slowest 5 % (${slow.length} trips), ms between points:`);
  console.log("| leg | slow: median | slow: mean | all: median |\n| --- | --- | --- | --- |");
  for (const [g, v] of Object.entries(gaps)) {
    console.log(`| ${g} | ${v.median} | ${v.mean} | ${v.typical} |`);
  }
  const outDir = join(import.meta.dirname!, "results");
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeTextFile(
    join(outDir, "trip_anatomy.json"),
    JSON.stringify(
      {
        rounds,
        queue_type: declared,
        points,
        slowest_5pct_gaps: gaps,
        trips: trips.map((t) => ({
          task_id: t.taskId,
          start: t.start,
          ...mapValues(t.at, round2),
        })),
      },
      null,
      2,
    ) + "\n",
  );
} finally {
  await stack.stop();
  globalThis.fetch = plainFetch;
}
