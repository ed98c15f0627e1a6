/**
 * One SDK process of the cluster-loss run (`cluster_loss.ts`): `deno run cluster_sdk_main.ts
 * <json>` with `{endpoints, from, count, rate, sideEffects, reload}` and the service's address
 * and API client in the environment. It submits tasks `from .. from+count-1` at `rate` per
 * second, alternating between the endpoints (one executor, so one task group, per endpoint);
 * each task appends its number to the side-effect file and returns it. With `reload`, halfway
 * through it drops its executors without waiting and makes new ones on the same task groups,
 * which take the earlier tasks back with `reloadTasks()` and submit the rest, as a process
 * restarted by its user would. It prints `{"event":"groups",...}` once it knows its groups, and
 * `{"event":"done",...}` once every future has settled (or on SIGTERM, with what it has):
 * each task's outcome, how many futures saw a second, different outcome, and the task ids.
 *
 * @module
 */
import { FuncXClient, FuncXExecutor, type FuncXFuture } from "../../mod.ts";
import { failureOutcome, type Outcome, outcomeKey, outcomeLabel } from "./outcome.ts";

interface Args {
  endpoints: string[];
  from: number;
  count: number;
  rate: number;
  sideEffects: string;
  reload: boolean;
}
const args = JSON.parse(Deno.args[0] ?? "null") as Args | null;
if (!args || !Array.isArray(args.endpoints) || args.endpoints.length === 0) {
  throw new TypeError('Usage: cluster_sdk_main.ts \'{"endpoints":[...],"from":0,...}\'');
}

function sideEffect(n: number, file: string): number {
  Deno.writeTextFileSync(file, `${n}\n`, { append: true });
  return n;
}

const client = new FuncXClient();
let executors = args.endpoints.map((endpointId) => new FuncXExecutor({ endpointId, client }));
const groups = executors.map((fx) => fx.taskGroupId);
console.log(JSON.stringify({ event: "groups", groups }));
const outcomes: Record<string, string> = {};
const numbers = new Map<string, number>();
let conflicting = 0;
const watched = new Set<FuncXFuture<unknown>>();
const settled: Promise<void>[] = [];

function watch(f: FuncXFuture<unknown>, n: number | undefined): void {
  if (watched.has(f)) return;
  watched.add(f);
  const seen = new Set<string>();
  const note = (o: Outcome) => {
    seen.add(outcomeKey(o));
    if (seen.size === 2) conflicting++;
  };
  const setResult = f.setResult.bind(f);
  const setException = f.setException.bind(f);
  f.setResult = (v) => (note({ kind: "value", value: v }), setResult(v));
  f.setException = (e) => (note(failureOutcome(e)), setException(e));
  settled.push(
    f.then(
      (value) => void (outcomes[f.taskId!] = outcomeKey({ kind: "value", value })),
      (err) => void (outcomes[f.taskId!] = outcomeLabel(failureOutcome(err))),
    ).then(() => {
      if (n !== undefined && f.taskId) numbers.set(f.taskId, n);
    }),
  );
}

const report = () =>
  console.log(JSON.stringify({
    event: "done",
    submitted: numbers.size,
    settled: Object.keys(outcomes).length,
    outcomes,
    numbers: Object.fromEntries(numbers),
    conflicting,
    groups,
  }));
Deno.addSignalListener("SIGTERM", () => {
  report();
  Deno.exit(3);
});

const started = performance.now();
const half = Math.floor(args.count / 2);
const taskIds = new Map<FuncXFuture<unknown>, number>();
for (let i = 0; i < args.count; i++) {
  if (args.reload && i === half) {
    // A restart of this process once its submits are answered: the old executors go without
    // waiting for their futures.
    for (const f of taskIds.keys()) await until(() => f.taskId !== undefined || f.done);
    await Promise.all(executors.map((fx) => fx.shutdown({ wait: false })));
    executors = args.endpoints.map((endpointId, k) =>
      new FuncXExecutor({ endpointId, client, taskGroupId: groups[k]! })
    );
    for (const fx of executors) for (const f of await fx.reloadTasks()) watch(f, undefined);
    console.log(JSON.stringify({ event: "reloaded", futures: watched.size }));
  }
  // Steady rate: wait until this task's time.
  const due = started + (i / args.rate) * 1000;
  if (due > performance.now()) {
    await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
  }
  const n = args.from + i;
  const fx = executors[i % executors.length]!;
  const f = fx.submit(sideEffect, n, args.sideEffects) as FuncXFuture<unknown>;
  taskIds.set(f, n);
  if (!(args.reload && i < half)) watch(f, n);
  else {
    // Before the reload only the submit matters: its task id and number.
    void f.then(() => {}, () => {});
  }
}
// The task ids of the first half (before the reload) are known once their submits are answered.
for (const [f, n] of taskIds) {
  await until(() => f.taskId !== undefined || f.done);
  if (f.taskId) numbers.set(f.taskId, n);
}
await Promise.all(settled);
report();
await Promise.all(executors.map((fx) => fx.shutdown({ wait: false })));
Deno.exit(0);

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 50));
}
