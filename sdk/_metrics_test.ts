import assert from "node:assert/strict";
import { MetricsRegistry } from "./_metrics.ts";
import { taskHops } from "./_task_hops.ts";

Deno.test("MetricsRegistry renders counters, gauges and cumulative histogram buckets", async () => {
  const r = new MetricsRegistry();
  const c = r.counter("x_total", "Things\ncounted", ["kind"]);
  c.inc({ kind: 'a"b\\c' }, 3);
  const g = r.gauge("depth", "Depth");
  r.collect(() => g.set({}, 7));
  const h = r.histogram("lat_seconds", "Latency", { buckets: [0.1, 1] });
  h.observe({}, 0.05);
  h.observe({}, 0.5);
  h.observe({}, 5);
  const text = await r.render();
  assert.equal(
    text,
    [
      "# HELP x_total Things\\ncounted",
      "# TYPE x_total counter",
      'x_total{kind="a\\"b\\\\c"} 3',
      "# HELP depth Depth",
      "# TYPE depth gauge",
      "depth 7",
      "# HELP lat_seconds Latency",
      "# TYPE lat_seconds histogram",
      'lat_seconds_bucket{le="0.1"} 1',
      'lat_seconds_bucket{le="1"} 2',
      'lat_seconds_bucket{le="+Inf"} 3',
      "lat_seconds_sum 5.55",
      "lat_seconds_count 3",
      "",
    ].join("\n"),
  );
  assert.deepEqual(h.snapshot().counts, [1, 1, 1]);
});

Deno.test("MetricsRegistry refuses bad names, missing labels and counters going down", () => {
  const r = new MetricsRegistry();
  assert.throws(() => r.counter("bad name", "x"), /Invalid metric name "bad name"/);
  const c = r.counter("y_total", "y", ["state"]);
  assert.throws(() => c.inc({}), /needs label "state"/);
  assert.throws(() => c.inc({ state: "a", other: "b" }), /has no label "other"/);
  assert.throws(() => c.inc({ state: "a" }, -1), /cannot go down/);
  assert.throws(() => r.counter("y_total", "again"), /registered twice/);
  assert.throws(() => r.histogram("h", "h", { labelNames: ["le"] }), /Invalid label name "le"/);
  assert.equal(c.value({ state: "never" }), 0);
});

Deno.test("Gauge.replace drops series that are gone", async () => {
  const r = new MetricsRegistry();
  const g = r.gauge("tasks", "Tasks", ["state"]);
  g.replace([[{ state: "running" }, 2], [{ state: "waiting" }, 1]]);
  g.replace([[{ state: "running" }, 1]]);
  const text = await r.render();
  assert.match(text, /^tasks\{state="running"\} 1$/m);
  assert.doesNotMatch(text, /waiting/);
});

Deno.test("taskHops names each hop by its two states and never goes negative", () => {
  const hops = taskHops([
    { timestamp: 5_000_000_000n, state: "received", actor: "endpoint" },
    { timestamp: 4_000_000_000n, state: "running", actor: "manager" },
    { timestamp: 4_500_000_000n, state: "execution-end", actor: "worker" },
  ]);
  assert.deepEqual(hops, [
    { from: "received", to: "running", seconds: 0 },
    { from: "running", to: "execution-end", seconds: 0.5 },
  ]);
});
