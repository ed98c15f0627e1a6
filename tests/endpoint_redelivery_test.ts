/**
 * Tasks that ran while the endpoint's broker link was down come back when it reconnects (their
 * acks were lost with the link), and they are the first deliveries on the new link: the endpoint
 * must ack them as duplicates there, or they hold its prefetch window and no later task ever
 * arrives (the broker showed 10 unacked and 1,633 ready messages on such a queue). Run for real:
 * the endpoint's broker link goes through a proxy that is cut while two tasks run, with a
 * prefetch of 2.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FuncXExecutor } from "../mod.ts";
import { gatedSideEffect, sideEffectRuns } from "./harness/gated_task.ts";
import { settledWithin } from "./harness/wait.ts";
import { TcpProxy } from "./harness/tcp_proxy.ts";
import { clientOf, privateVhost, startEndpoint, startService } from "./harness/stack.ts";
import { until } from "./harness/until.ts";

Deno.test({
  name: "tasks redelivered as a link comes back are acked as duplicates and later tasks still come",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using site = await privateVhost("funcx-redelivery-");
    const { access, amqpUrl, dir } = site;
    await using link = TcpProxy.start({ targetPort: Number(new URL(amqpUrl).port) });
    const publicUrl = new URL(amqpUrl);
    publicUrl.port = String(link.port);
    const service = await startService({
      dir,
      amqpUrl,
      broker: access,
      args: ["--public-amqp-url", publicUrl.toString()],
    });
    try {
      const endpoint = await startEndpoint({ service, dir, workers: 2, config: { prefetch: 2 } });
      try {
        const client = clientOf(service);
        const sideEffects = join(dir, "side-effects.txt");
        await Deno.writeTextFile(sideEffects, "");
        const gate = join(dir, "gate");
        const fnId = await client.registerFunction(gatedSideEffect);
        await using fx = new FuncXExecutor({ endpointId: endpoint.endpointId, client });
        const running = [1, 2].map((n) =>
          fx.submitToRegisteredFunction(fnId, [n, sideEffects, gate])
        );
        await until("both tasks to run", async () => {
          return (await sideEffectRuns(sideEffects)).length === 2;
        });
        // The link drops while they run; they finish meanwhile (results kept on disk), and the
        // broker keeps their messages unacked until it sees the connection go.
        link.cut({ mode: "refuse" });
        await Deno.writeTextFile(gate, "");
        await until(
          "the endpoint to keep both results on disk",
          async () =>
            /\b2 results waiting on disk, 0 tasks running/.test(await endpoint.process.log()),
        );
        link.restore();
        assert.deepEqual(
          await Promise.all(
            running.map((f) => settledWithin(f, 60_000, "a task that ran offline")),
          ),
          [1, 2],
        );
        // A fresh task needs a free prefetch slot: the two redelivered messages must be acked.
        const later = fx.submitToRegisteredFunction(fnId, [3, sideEffects, null]);
        assert.equal(await settledWithin(later, 60_000, "a task after the reconnect"), 3);
        const runs = await sideEffectRuns(sideEffects);
        assert.deepEqual(runs, ["1", "2", "3"], "each task ran once");
        assert.match(await endpoint.process.log(), /delivered again but already ran here/);
      } finally {
        await endpoint.process.stop();
      }
    } finally {
      await service.process.stop();
    }
  },
});
