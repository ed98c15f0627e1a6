/**
 * A second (third, ...) process attached to a chaos run's task group, as a cron run that
 * overlaps the previous one would be: `deno run attach_main.ts <endpoint id> <task group id>`
 * with the service's address and API client in the environment. It prints
 * `{"event":"attached","tasks":N}` once `reloadTasks()` has answered, then, once every future
 * has settled (or on SIGTERM, with what it has so far), `{"event":"done",...}` with each task's
 * outcome.
 *
 * @module
 */
import { FuncXClient, FuncXExecutor } from "../../mod.ts";
import { failureOutcome, type Outcome, outcomeKey } from "./outcome.ts";

const [endpointId, taskGroupId] = Deno.args;
if (endpointId === undefined || taskGroupId === undefined) {
  throw new TypeError("Usage: attach_main.ts <endpoint id> <task group id>");
}
const fx = new FuncXExecutor({ endpointId, taskGroupId, client: new FuncXClient() });
const futures = await fx.reloadTasks();
console.log(JSON.stringify({ event: "attached", tasks: futures.length }));

const outcomes: Record<string, string> = {};
let conflicting = 0;
for (const f of futures) {
  if (f.done) continue;
  // A second delivery with another outcome is what "delivered twice" would look like here.
  const seen = new Set<string>();
  const note = (o: Outcome) => {
    seen.add(outcomeKey(o));
    if (seen.size === 2) conflicting++;
  };
  const setResult = f.setResult.bind(f);
  const setException = f.setException.bind(f);
  f.setResult = (v) => {
    note({ kind: "value", value: v });
    setResult(v);
  };
  f.setException = (e) => {
    note(failureOutcome(e));
    setException(e);
  };
}
const report = () =>
  console.log(JSON.stringify({
    event: "done",
    tasks: futures.length,
    settled: Object.keys(outcomes).length,
    outcomes,
    conflicting,
  }));
Deno.addSignalListener("SIGTERM", () => {
  report();
  Deno.exit(3);
});
await Promise.all(futures.map((f) =>
  f.then(
    (value) => void (outcomes[f.taskId!] = outcomeKey({ kind: "value", value })),
    (err) => void (outcomes[f.taskId!] = outcomeKey(failureOutcome(err))),
  )
));
report();
await fx.shutdown({ wait: false });
Deno.exit(0);
