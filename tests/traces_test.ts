/**
 * One trace per task, collected for real: the SDK (a script of its own), the service and the
 * endpoint daemon run with Deno's built-in OpenTelemetry turned on (`OTEL_DENO=true`) and export
 * their spans over OTLP/HTTP (JSON) to a receiver in this test. Each task's trace must hold every
 * hop of its trip, named after the hop, with unbroken parent links and one root, and no two
 * tasks may share a trace. A script run without `OTEL_DENO` adds no task span anywhere.
 */
import assert from "node:assert/strict";
import { denoRunArgs, killAfter, RUN_DENO_DEADLINE_MS, runDeno } from "./harness/process.ts";
import { type ReceivedSpan, startOtlpReceiver } from "./harness/otlp.ts";
import {
  createVhost,
  deleteVhost,
  type EndpointHandle,
  type ServiceHandle,
  sharedBroker,
  startEndpoint,
  startService,
} from "./harness/stack.ts";
import { until } from "./harness/until.ts";
import { parseTraceparent, recordHop, startHop, TRACING } from "../sdk/_tracing.ts";

/** Every hop of a task's trip, and the hop each one hangs from. */
const PARENT: Record<string, string | null> = {
  "sdk.submit": null,
  "service.submit": "sdk.submit",
  "broker.publish": "service.submit",
  "endpoint.task": "service.submit",
  "engine.task": "endpoint.task",
  "worker.run": "engine.task",
  "endpoint.result": "endpoint.task",
  "service.result": "endpoint.result",
  "sdk.result": "service.result",
};

/** Where each hop is recorded (`OTEL_SERVICE_NAME` of that process). */
const PROCESS: Record<string, string> = {
  "sdk.submit": "funcx-sdk",
  "service.submit": "funcx-service",
  "broker.publish": "funcx-service",
  "endpoint.task": "funcx-endpoint",
  "engine.task": "funcx-endpoint",
  "worker.run": "funcx-endpoint",
  "endpoint.result": "funcx-endpoint",
  "service.result": "funcx-service",
  "sdk.result": "funcx-sdk",
};

const TASKS = 6;

/** A traced run of the trace client: what it printed, and how to end it. */
interface TracedClient {
  out: { taskIds: string[]; failed: number };
  end(): Promise<void>;
}

/**
 * Runs the trace client with OpenTelemetry on and returns its answer as soon as it prints it.
 * Its spans arrive while it runs (the exporter sends every few seconds), and the test waits for
 * them; the test then ends the client, rather than waiting for its exit: under load Deno's
 * exporter has been seen to keep a traced process alive after its last line (never without
 * `OTEL_DENO`: 14 runs of the same client under the same load all exited).
 */
async function tracedClient(args: string[], env: Record<string, string>): Promise<TracedClient> {
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRunArgs("tests/harness/trace_client.ts", args),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  // One that never prints is killed: its stdout ends, and the test fails rather than hangs.
  const deadline = killAfter(child, RUN_DENO_DEADLINE_MS);
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  deadline.stop();
  await reader.cancel().catch(() => {});
  const end = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited by itself.
    }
    await child.status;
  };
  if (!text.includes("\n")) {
    const { code } = await child.status;
    throw new Error(`The trace client exited (${code}) without printing its task ids`);
  }
  return { out: JSON.parse(text.slice(0, text.indexOf("\n"))), end };
}

function traceOf(spans: readonly ReceivedSpan[], taskId: string): ReceivedSpan[] | undefined {
  const ids = new Set(
    spans.filter((s) => s.attributes["funcx.task_id"] === taskId).map((s) => s.traceId),
  );
  if (ids.size !== 1) return undefined;
  const [traceId] = ids;
  const trace = spans.filter((s) => s.traceId === traceId);
  return Object.keys(PARENT).every((n) => trace.some((s) => s.name === n)) ? trace : undefined;
}

Deno.test("tracing helpers: off unless OTEL_DENO, traceparent parsed strictly", () => {
  // This test process runs without OTEL_DENO: nothing is made, whatever the caller asks.
  assert.equal(TRACING, false);
  assert.equal(startHop("sdk.submit", undefined), undefined);
  assert.equal(
    recordHop("x", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 1, 2),
    undefined,
  );
  assert.deepEqual(parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), {
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    traceFlags: 1,
  });
  for (
    const bad of [
      "",
      "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
    ]
  ) assert.equal(parseTraceparent(bad), undefined, bad);
});

Deno.test("traces: one unbroken trace per task, SDK to worker and back", async () => {
  await using receiver = startOtlpReceiver();
  const broker = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-traces-" });
  const vhost = `traces-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(broker, vhost);
  let service: ServiceHandle | undefined;
  let endpoint: EndpointHandle | undefined;
  const clients: TracedClient[] = [];
  try {
    service = await startService({
      dir,
      amqpUrl,
      broker,
      env: receiver.env("funcx-service"),
    });
    endpoint = await startEndpoint({
      service: { ...service, env: { ...service.env, ...receiver.env("funcx-endpoint") } },
      dir,
      workers: 2,
    });
    const traced = await tracedClient([endpoint.endpointId, String(TASKS)], {
      ...service.env,
      ...receiver.env("funcx-sdk"),
    });
    clients.push(traced);
    const out = traced.out;
    assert.equal(out.taskIds.length, TASKS);
    assert.equal(out.failed, 1, "the task meant to fail did not");

    // The service and the endpoint export in batches: wait until every task's trace is whole.
    const traces = await until(
      "every task's trace to be complete",
      () => {
        const all = out.taskIds.map((id) => traceOf(receiver.spans, id));
        return all.every((t) => t !== undefined) && (all as ReceivedSpan[][]);
      },
      30_000,
      200,
    ).catch((err) => {
      const seen = new Map<string, number>();
      for (const sp of receiver.spans) {
        const k = `${sp.service}/${sp.name}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
      throw new Error(`${err.message}; spans received: ${JSON.stringify([...seen])}`);
    });
    assert.deepEqual(receiver.errors, []);
    const traceIds = new Set(traces.map((t) => t[0]!.traceId));
    assert.equal(traceIds.size, TASKS, "two tasks share a trace");

    for (const [i, trace] of traces.entries()) {
      const taskId = out.taskIds[i]!;
      const byId = new Map(trace.map((s) => [s.spanId, s]));
      const roots = trace.filter((s) => s.parentSpanId === "");
      assert.deepEqual(roots.map((s) => s.name), ["sdk.submit"], `roots of ${taskId}'s trace`);
      for (const [name, parent] of Object.entries(PARENT)) {
        const hops = trace.filter((s) => s.name === name);
        assert.equal(hops.length, 1, `${taskId}: ${hops.length} ${name} spans`);
        const hop = hops[0]!;
        assert.equal(hop.service, PROCESS[name], `${name} exported by ${hop.service}`);
        assert.equal(hop.attributes["funcx.task_id"] ?? taskId, taskId);
        assert.ok(hop.endNs >= hop.startNs, `${name} ends before it starts`);
        if (parent === null) continue;
        const up = byId.get(hop.parentSpanId);
        assert.ok(up, `${taskId}: the parent of ${name} is not in its trace`);
        // A result the SDK read from the service (its stream was not bound yet) hangs from the
        // root; one that came on the stream straight from the endpoint, from the endpoint's hop;
        // one the service forwarded, from the service's.
        const readFrom = name === "sdk.result" ? hop.attributes["funcx.read_from"] : undefined;
        const expected = readFrom === "service"
          ? "sdk.submit"
          : readFrom === "endpoint"
          ? "endpoint.result"
          : parent;
        assert.equal(up.name, expected, `${taskId}: ${name} hangs from ${up.name}`);
      }
      // Every span of the trace hangs from one in it: the links are unbroken.
      for (const s of trace) {
        if (s.parentSpanId) assert.ok(byId.has(s.parentSpanId), `${s.name}: broken parent link`);
      }
      // The root spans the trip: from the submit to the future settled.
      const root = roots[0]!;
      const worker = trace.find((s) => s.name === "worker.run")!;
      const last = trace.find((s) => s.name === "sdk.result")!;
      assert.ok(root.startNs <= worker.startNs && worker.endNs <= last.endNs);
      assert.ok(last.endNs <= root.endNs, "sdk.submit ended before sdk.result");
      assert.equal(worker.attributes["funcx.failed"], i === 2, `worker.run of task ${i}`);
    }

    // Without OTEL_DENO the SDK sends no trace context, and no process records a task hop.
    const before = receiver.spans.length;
    const plain = JSON.parse(
      await runDeno("tests/harness/trace_client.ts", [endpoint.endpointId, "3"], service.env),
    ) as { taskIds: string[] };
    // A traced task sent now is the marker that everything exported before it has arrived.
    const markerClient = await tracedClient([endpoint.endpointId, "1"], {
      ...service.env,
      ...receiver.env("funcx-sdk"),
    });
    clients.push(markerClient);
    const marker = markerClient.out;
    await until("the marker task's trace", () => traceOf(receiver.spans, marker.taskIds[0]!));
    const late = receiver.spans.slice(before);
    for (const id of plain.taskIds) {
      assert.ok(!late.some((s) => s.attributes["funcx.task_id"] === id), `untraced ${id} traced`);
    }
    assert.ok(
      late.every((s) => !(s.name in PARENT) || s.attributes["funcx.task_id"] !== undefined),
    );
  } finally {
    for (const c of clients) await c.end();
    await endpoint?.process.stop();
    await service?.process.stop();
    await deleteVhost(broker, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
