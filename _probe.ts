import { FuncXExecutor } from "./mod.ts";
import { clientOf, startStack } from "./tests/harness/stack.ts";
const args = Deno.args.includes("--direct") ? ["--direct-results"] : [];
if (Deno.args.includes("--classic")) args.push("--queue-type", "classic");
await using stack = await startStack({ serviceArgs: args });
const client = clientOf(stack.service);
const noop = await client.registerFunction(() => 0);
const fx = new FuncXExecutor({ endpointId: stack.endpoint.endpointId, client });
const wallNow = () => performance.timeOrigin + performance.now();
for (let i = 0; i < 30; i++) await fx.submitToRegisteredFunction(noop);
const hops: Record<string, number[]> = {};
const trips = [];
const ROUNDS = Number(Deno.env.get("ROUNDS") ?? 300);
for (let i = 0; i < ROUNDS; i++) {
  const start = wallNow();
  const f = fx.submitToRegisteredFunction(noop);
  let accepted = 0;
  const orig = f.setTaskId.bind(f);
  f.setTaskId = (id: string) => { accepted = wallNow(); orig(id); };
  await f;
  trips.push({ start, end: wallNow(), accepted, taskId: f.taskId! });
}
for (const trip of trips) {
  const info = await client.getTask(trip.taskId) as unknown as { task_transitions?: Array<{ state: string; timestamp: string }> };
  for (const t of info.task_transitions ?? []) (hops[t.state] ??= []).push(Number(BigInt(t.timestamp) / 1000n) / 1000 - trip.start);
  (hops["submit answered"] ??= []).push(trip.accepted - trip.start);
  (hops["result in hand"] ??= []).push(trip.end - trip.start);
}
const slow = trips.map((t) => ({ ...t, ms: t.end - t.start })).sort((a, b) => b.ms - a.ms).slice(0, Math.ceil(trips.length / 50));
const t0 = trips[0]!.start;
for (const t of slow) {
  const info = await client.getTask(t.taskId) as unknown as { task_transitions?: Array<{ state: string; timestamp: string }> };
  console.log(`slow ${t.ms.toFixed(2)} ms at +${((t.start - t0) / 1000).toFixed(3)} s: answered ${(t.accepted - t.start).toFixed(2)}`, (info.task_transitions ?? []).map((x) => `${x.state} ${(Number(BigInt(x.timestamp) / 1000n) / 1000 - t.start).toFixed(2)}`).join(", "));
}
const p = (v: number[], q: number) => v.sort((a, b) => a - b)[Math.floor(v.length * q)]!.toFixed(2);
for (const [k, v] of Object.entries(hops).sort((a, b) => Number(p(a[1], .5)) - Number(p(b[1], .5)))) console.log(k.padEnd(28), "p50", p(v, .5), "p90", p(v, .9));
await fx.shutdown?.();
Deno.exit(0);
