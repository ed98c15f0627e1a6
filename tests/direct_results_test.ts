/**
 * One broker hop for results: a task carries its group's route, and the endpoint publishes its
 * result as `<endpoint_id>.results.<route>`, which the broker takes to the service and to the
 * group's result streams at once. Proved against the real stack by stopping the service
 * (SIGSTOP) while a task runs: its future still settles, so the result reached the SDK without the
 * service. A result that names another endpoint in its routing key is dropped by the SDK, and the
 * service stores the real one once it runs again. With `--no-direct-results` the same result waits
 * for the service.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import amqp from "amqplib";
import { Buffer } from "node:buffer";
import { FuncXExecutor } from "../mod.ts";
import { packMessage, serialize } from "../sdk/protocol/mod.ts";
import { groupRoutingKey } from "../service/routes/tasks.ts";
import { clientOf, sharedBroker, startStack } from "./harness/stack.ts";
import { until } from "./harness/until.ts";

Deno.test("a result reaches the SDK straight from the endpoint, with the service stopped", async () => {
  const access = await sharedBroker();
  // One-hop results are the service's default.
  await using stack = await startStack({ workers: 2 });
  const client = clientOf(stack.service);
  const me = await client.whoami();
  const marker = join(stack.dir, "started");
  const fnId = await client.registerFunction(async (path: string) => {
    await Deno.writeTextFile(path, "started");
    await new Promise((r) => setTimeout(r, 1000));
    return 42;
  });
  await using fx = new FuncXExecutor({ endpointId: stack.endpoint.endpointId, client });
  // A first round trip: the stream is attached and its queue bound.
  assert.equal(await fx.submitToRegisteredFunction(fnId, [join(stack.dir, "warm-up")]), 42);

  const future = fx.submitToRegisteredFunction(fnId, [marker]);
  await until(
    "the task to start in a worker",
    () => Deno.stat(marker).then(() => true, () => false),
  );
  stack.service.process.signal("SIGSTOP");
  try {
    // Another endpoint's routing key with this group's route: the SDK must not take it.
    const url = new URL(access.amqpUrl);
    url.pathname = `/${encodeURIComponent(stack.vhost)}`;
    const conn = await amqp.connect(url.toString());
    try {
      const ch = await conn.createConfirmChannel();
      const taskId = await until("the task id", () => future.taskId);
      const forged = packMessage({
        message_type: "result",
        data: { task_id: taskId, data: serialize(-1), error_details: null, task_statuses: null },
      });
      const key = `${crypto.randomUUID()}.results.${groupRoutingKey(me.id, fx.taskGroupId)}`;
      ch.publish("results", key, Buffer.from(forged), { persistent: true });
      await ch.waitForConfirms();
    } finally {
      await conn.close();
    }
    const value = await Promise.race([
      future,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("no result while the service was stopped")), 30_000)
      ),
    ]);
    assert.equal(value, 42, "the forged result was taken");
  } finally {
    stack.service.process.signal("SIGCONT");
  }
  // Once it runs again, the service stores the endpoint's result; the forged one names another
  // endpoint than the task's, and is dropped there too.
  const info = await until("the stored result", async () => {
    const t = await client.getTask(future.taskId!);
    return t.pending ? undefined : t;
  });
  assert.equal(info.status, "success");
  assert.equal(await client.getResult(future.taskId!), 42);
});

Deno.test("with --no-direct-results a result goes through the service: none while it is stopped", async () => {
  await using stack = await startStack({ workers: 1, serviceArgs: ["--no-direct-results"] });
  const client = clientOf(stack.service);
  const marker = join(stack.dir, "started");
  const gate = join(stack.dir, "gate");
  const fnId = await client.registerFunction(async (started: string, go: string | null) => {
    await Deno.writeTextFile(started, "started");
    while (go !== null && !(await Deno.stat(go).then(() => true, () => false))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return 7;
  });
  await using fx = new FuncXExecutor({ endpointId: stack.endpoint.endpointId, client });
  assert.equal(await fx.submitToRegisteredFunction(fnId, [join(stack.dir, "warm-up"), null]), 7);
  const future = fx.submitToRegisteredFunction(fnId, [marker, gate]);
  await until(
    "the task to start in a worker",
    () => Deno.stat(marker).then(() => true, () => false),
  );
  stack.service.process.signal("SIGSTOP");
  try {
    // The task returns now, with the service stopped. One hop would bring its result within
    // milliseconds; through the service it must wait.
    await Deno.writeTextFile(gate, "");
    const early = await Promise.race([
      future.then(() => "settled"),
      new Promise((r) => setTimeout(() => r("waiting"), 2000)),
    ]);
    assert.equal(early, "waiting", "the result reached the SDK without the service");
  } finally {
    stack.service.process.signal("SIGCONT");
  }
  assert.equal(await future, 7);
});
