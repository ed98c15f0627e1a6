/**
 * What the submit path's guarantees cost a round trip. Sequential no-op round trips through the
 * real stack (private broker, service, endpoint with 2 workers), by two ways in turn, in blocks
 * of 50 so that both see the same machine:
 *
 * - **through the service**: `FuncXExecutor` with its defaults (HTTP, authentication, the store
 *   commits the task before the answer, the outbox relay publishes it, results in one broker hop);
 * - **straight to the broker**: the bench publishes the same task message itself to the
 *   endpoint's queue (publisher confirm, no HTTP, no store) and reads the result from a queue of
 *   its own bound to the task's result route: the path a broker-only system such as Celery takes,
 *   without the guarantees the service gives (an accepted task is in the store before the client
 *   hears of it; every task is authenticated, checked and recorded).
 *
 * - **straight to the broker, the service stopped**: the same, with the service's process stopped
 *   (SIGSTOP) for the block, so that it does not store the results on the same cores meanwhile
 *   (they wait in its queue; it is let go and has stored them all before the next block): what
 *   keeping every result in the store costs a trip's tail.
 *
 * It does so once with quorum task queues (a cluster's: replicated, and delivered only once the
 * broker's log is on disk) and once with classic queues (the default on one node: delivered at
 * once), so the four rows tell each guarantee's price. It prints p50, p95 and p99 of each and writes
 * `bench/results/guarantee_cost.json`.
 *
 * Usage: `deno run -A bench/guarantee_cost.ts [--rounds 600]` (rounds per way and queue type)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { FuncXExecutor } from "../mod.ts";
import {
  encodeTask,
  packArgs,
  packBuffers,
  packTaskBatch,
  type ResultMessage,
  serialize,
  unpackMessage,
} from "../sdk/protocol/mod.ts";
import { clientOf, startStack } from "../tests/harness/stack.ts";
import { RESULTS_QUEUE } from "../service/broker.ts";
import { loadAverage, loadWarning, percentile, round2 } from "./_repeat.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "600" } },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 100) {
  throw new RangeError(`Invalid --rounds "${values.rounds}": expected a whole number >= 100`);
}
const BLOCK = 50;

type Way = "service" | "broker" | "paused";
interface Row {
  way: Way;
  queueType: "quorum" | "classic";
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

const noop = () => 0;

/** Round trips of one queue type, both ways in turn: ms per trip for each way. */
async function measure(queueType: "quorum" | "classic"): Promise<Record<Way, number[]>> {
  const stack = await startStack({ serviceArgs: ["--queue-type", queueType] });
  const conn = await amqp.connect(stack.service.amqpUrl);
  try {
    const client = clientOf(stack.service);
    const endpointId = stack.endpoint.endpointId;
    const fnId = await client.registerFunction(noop);
    await using fx = new FuncXExecutor({ endpointId, client });

    // The straight way: a queue of the bench's own, bound to one result route.
    const route = `bench-${crypto.randomUUID()}`;
    const ch = await conn.createConfirmChannel();
    const { queue } = await ch.assertQueue("", { exclusive: true, autoDelete: true });
    await ch.bindQueue(queue, "results", `*.results.${route}`);
    const waiting = new Map<string, (r: ResultMessage) => void>();
    await ch.consume(queue, (msg) => {
      if (!msg) return;
      const m = unpackMessage(new Uint8Array(msg.content));
      const results = m.message_type === "result_batch"
        ? m.data.results
        : m.message_type === "result"
        ? [m.data]
        : [];
      for (const r of results) waiting.get(r.task_id)?.(r);
    }, { noAck: true });
    const taskBuffer = packBuffers([serialize(noop)]) + packArgs([]);
    const straight = async () => {
      const taskId = crypto.randomUUID();
      const body = packTaskBatch([encodeTask({
        task_id: taskId,
        container_id: null,
        task_buffer: taskBuffer,
        function_id: fnId,
        result_route: route,
      })]);
      const { promise, resolve } = Promise.withResolvers<ResultMessage>();
      waiting.set(taskId, resolve);
      const confirmed = new Promise<void>((ok, fail) =>
        ch.publish(
          "tasks",
          `${endpointId}.tasks`,
          Buffer.from(body.buffer, body.byteOffset, body.byteLength),
          { persistent: true, mandatory: true },
          (err: unknown) => (err ? fail(err) : ok()),
        )
      );
      const [result] = await Promise.all([promise, confirmed]);
      waiting.delete(taskId);
      if (result.error_details) {
        throw new Error(`Task failed: ${JSON.stringify(result.error_details)}`);
      }
    };
    const viaService = async () => {
      await fx.submitToRegisteredFunction(fnId);
    };

    // Both ways warmed up (JIT, the result stream's queue) before anything counts.
    for (let i = 0; i < 50; i++) await viaService(), await straight();
    const service = stack.service.process;
    /** Lets the service go on and waits until it has stored what came while it was stopped. */
    const resumeService = async () => {
      service.signal("SIGCONT");
      while ((await ch.checkQueue(RESULTS_QUEUE)).messageCount > 0) {
        await new Promise((r) => setTimeout(r, 5));
      }
      for (let i = 0; i < 5; i++) await viaService();
    };
    const times: Record<Way, number[]> = { service: [], broker: [], paused: [] };
    const ways = [["service", viaService], ["broker", straight], ["paused", straight]] as const;
    for (let done = 0; done < rounds; done += BLOCK) {
      for (const [way, trip] of ways) {
        if (way === "paused") service.signal("SIGSTOP");
        try {
          for (let i = 0; i < Math.min(BLOCK, rounds - done); i++) {
            const start = performance.now();
            await trip();
            times[way].push(performance.now() - start);
          }
        } finally {
          if (way === "paused") await resumeService();
        }
      }
    }
    return times;
  } finally {
    await conn.close().catch(() => {});
    await stack.stop();
  }
}

const warning = loadWarning();
if (warning) console.error(warning);
const rows: Row[] = [];
for (const queueType of ["quorum", "classic"] as const) {
  console.error(`${queueType} queues: ${rounds} round trips each way`);
  const times = await measure(queueType);
  for (const way of ["service", "broker", "paused"] as const) {
    const t = times[way].sort((a, b) => a - b);
    rows.push({
      way,
      queueType,
      p50: round2(percentile(t, 0.5)),
      p95: round2(percentile(t, 0.95)),
      p99: round2(percentile(t, 0.99)),
      mean: round2(t.reduce((a, b) => a + b, 0) / t.length),
    });
  }
}
const WAY_NAME: Record<Way, string> = {
  service: "through the service (HTTP, store, outbox)",
  broker: "straight to the broker",
  paused: "straight to the broker, the service stopped",
};
console.log(`${rounds} sequential no-op round trips per row, ms (2 workers):`);
console.log(
  "| path | task queue | p50 | p95 | p99 | mean |\n| --- | --- | --- | --- | --- | --- |",
);
for (const r of rows) {
  console.log(
    `| ${WAY_NAME[r.way]} | ${r.queueType} | ${r.p50} | ${r.p95} | ${r.p99} | ${r.mean} |`,
  );
}
const outDir = join(import.meta.dirname!, "results");
await Deno.mkdir(outDir, { recursive: true });
await Deno.writeTextFile(
  join(outDir, "guarantee_cost.json"),
  JSON.stringify({ rounds, load_average: loadAverage(), rows }, null, 2) + "\n",
);
