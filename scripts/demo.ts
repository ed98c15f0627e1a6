/**
 * The demo (`deno task demo`): starts a private RabbitMQ node, the service and an endpoint with
 * two workers, runs real functions on it through the SDK, prints their results, and tears
 * everything down.
 *
 * @module
 */
import { FuncXExecutor, TaskExecutionFailed } from "../mod.ts";
import { packArgs } from "../sdk/protocol/mod.ts";
import { ensureRabbitInstalled, RabbitBroker } from "../tests/harness/rabbitmq.ts";
import { brokerAccess, clientOf, startStack } from "../tests/harness/stack.ts";
import { waitForResult } from "../tests/harness/wait.ts";

const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

await ensureRabbitInstalled();
console.log("Starting a private RabbitMQ node...");
await using broker = await RabbitBroker.start();
console.log(`  broker ready (${elapsed()})`);
console.log("Starting funcx-service and funcx-endpoint (2 workers)...");
await using stack = await startStack({ broker: brokerAccess(broker), workers: 2 });
console.log(`  service at ${stack.service.address}`);
console.log(`  endpoint ${stack.endpoint.endpointId} registered (${elapsed()})`);

const fx = clientOf(stack.service);
const ep = stack.endpoint.endpointId;

console.log("\n1. A plain function");
const add = await fx.registerFunction(function add(a: number, b: number) {
  return a + b;
});
console.log(`   add(40, 2) = ${await waitForResult(fx, await fx.run(add, ep, { args: [40, 2] }))}`);

console.log("\n2. An async function that returns structured data from the worker");
const where = await fx.registerFunction(async function where() {
  const hostname = Deno.hostname();
  await new Promise((r) => setTimeout(r, 10));
  return { hostname, pid: Deno.pid, deno: Deno.version.deno, at: new Date() };
});
console.log("  ", await waitForResult(fx, await fx.run(where, ep)));

console.log("\n3. A function that throws: the caller gets the remote error");
const fails = await fx.registerFunction(function divide(a: number, b: number) {
  if (b === 0) throw new RangeError("cannot divide by zero");
  return a / b;
});
try {
  await waitForResult(fx, await fx.run(fails, ep, { args: [1, 0] }));
} catch (err) {
  if (!(err instanceof TaskExecutionFailed)) throw err;
  console.log(`   ${err.remote.name}: ${err.remote.message}`);
  console.log(`   remote stack: ${err.remote.stack.split("\n").slice(0, 2).join(" | ")}`);
}

console.log("\n4. A batch of 200 tasks in one request");
const square = await fx.registerFunction((n: number) => n * n);
const started = performance.now();
const res = await fx.submit(
  Array.from({ length: 200 }, (_, i) => [square, ep, packArgs([i])] as [string, string, string]),
);
const ids = res.results.map((r) => {
  if (r.status !== "Success") throw new Error(`submit failed: ${r.reason}`);
  return r.task_uuid;
});
let sum = 0;
for (const id of ids) sum += await waitForResult(fx, id) as number;
console.log(
  `   sum of squares 0..199 = ${sum} (expected ${
    Array.from({ length: 200 }, (_, i) => i * i).reduce((a, b) => a + b)
  }) in ${((performance.now() - started) / 1000).toFixed(2)} s`,
);

console.log("\n5. FuncXExecutor: 2,000 tasks as futures, results on the AMQP stream");
{
  await using executor = new FuncXExecutor({ endpointId: ep, client: fx });
  const t = performance.now();
  const results = await Promise.all(
    Array.from({ length: 2000 }, (_, i) => executor.submit((n: number) => n % 7, i)),
  );
  const sevens = results.filter((r) => r === 0).length;
  console.log(
    `   ${results.length} results (${sevens} multiples of 7) in ${
      ((performance.now() - t) / 1000).toFixed(2)
    } s; ${executor.taskCountSubmitted} tasks submitted`,
  );
}

console.log(`\nDone in ${elapsed()}; stopping the stack.`);
