/**
 * The service keeps running when the broker drops its connection: it reconnects by itself,
 * declares its topology again, resumes consuming results (a result published while it was away
 * still reaches the user) and takes new tasks again. The broker's management API closes the
 * service's connection the way a broker restart or a network cut would.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FuncXExecutor } from "../mod.ts";
import { clientOf, sharedBroker, startStack } from "./harness/stack.ts";
import { dropConnections, until } from "./_endpoint_helpers.ts";

Deno.test("service: a dropped broker connection is re-established; nothing is lost", async () => {
  await using stack = await startStack({ workers: 2 });
  const access = await sharedBroker();
  const client = clientOf(stack.service);
  await using fx = new FuncXExecutor({ endpointId: stack.endpoint.endpointId, client });
  assert.equal(await fx.submit((x: number) => x + 1, 1), 2);

  const gate = join(stack.dir, "gate");
  // Runs until the test opens the gate, so its result is published after the drop.
  const slow = fx.submit(async (path: string) => {
    while (!(await Deno.stat(path).then(() => true, () => false))) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return "after the drop";
  }, gate);
  await until("the slow task to be accepted", () => slow.taskId !== undefined);

  const dropped = await until(
    "the service's broker connection to be listed",
    () => dropConnections(access, stack.vhost, "funcx-service").then((n) => n || undefined),
  );
  assert.ok(dropped >= 1);
  await Deno.writeTextFile(gate, "");
  assert.equal(await slow, "after the drop");

  // New work goes through once the service is back (a submit during the gap is a clear 503).
  const after = await until("a submit to go through again", async () => {
    try {
      return await fx.submit((x: number) => x * 10, 4);
    } catch (err) {
      assert.match(
        String(err),
        /broker_unavailable|broker is unavailable|broker connection is down/,
        String(err),
      );
      return undefined;
    }
  });
  assert.equal(after, 40);
  const log = await Deno.readTextFile(join(stack.dir, "service.log"));
  assert.match(log, /Broker connection lost/);
  assert.match(log, /Broker connection restored/);
});
