/**
 * A broker that stops answering on a connection that stays open: the service's and the
 * endpoint's links go through TCP proxies that, mid-run, swallow everything the broker sends
 * back on them (a link that drops packets; the broker still gets what they send). Without a
 * deadline on the broker's answers, such a link holds its work until AMQP heartbeats give up on
 * it, minutes later: the service's outbox relay waits on a confirm that never comes (and every
 * task after it waits too), and the endpoint's consumer gets no more tasks. With the deadline
 * (`--broker-deadline`, `FUNCX_ENDPOINT_BROKER_DEADLINE`, 2 s here) the missing confirm ends the
 * link, a new one is made, and the work goes on: the tasks complete, each run once.
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

/** `url` with its port changed to `port`. */
function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

Deno.test({
  name: "a broker link that goes silent is ended after --broker-deadline and nothing waits on it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using site = await privateVhost("funcx-deadline-");
    const { access, amqpUrl, dir } = site;
    const brokerPort = Number(new URL(amqpUrl).port);
    await using serviceLink = TcpProxy.start({ targetPort: brokerPort });
    // Endpoints and result streams get the broker's address through this one.
    await using publicLink = TcpProxy.start({ targetPort: brokerPort });
    const endpointLinks = new Set<number>();
    publicLink.tap((direction, chunk, link) => {
      // The connection's name, in the client's first frames.
      if (direction === "up" && new TextDecoder().decode(chunk).includes("funcx-endpoint")) {
        endpointLinks.add(link);
      }
    });
    const service = await startService({
      dir,
      amqpUrl: viaPort(amqpUrl, serviceLink.port),
      broker: access,
      args: [
        "--broker-deadline",
        "2",
        "--public-amqp-url",
        viaPort(amqpUrl, publicLink.port),
      ],
    });
    try {
      const endpoint = await startEndpoint({
        service: { ...service, env: { ...service.env, FUNCX_ENDPOINT_BROKER_DEADLINE: "2" } },
        dir,
        workers: 1,
      });
      try {
        const client = clientOf(service);
        const sideEffects = join(dir, "side-effects.txt");
        await Deno.writeTextFile(sideEffects, "");
        const fnId = await client.registerFunction(gatedSideEffect);
        await using fx = new FuncXExecutor({ endpointId: endpoint.endpointId, client });
        assert.equal(await fx.submitToRegisteredFunction(fnId, [1, sideEffects, null]), 1);

        // The service's link goes silent: its next confirm never comes, nor its results.
        assert.ok(serviceLink.silence() > 0);
        const second = fx.submitToRegisteredFunction(fnId, [2, sideEffects, null]);
        assert.equal(
          await settledWithin(second, 45_000, "a task after the service's link went silent"),
          2,
        );
        // Its result may have come straight from the endpoint; the service consumes results on
        // the silent link too, so it stores this one only once the link is replaced.
        await until(
          "the service to store the second task's result",
          async () => !(await client.getTask(second.taskId!)).pending,
          45_000,
        );
        const serviceLog = await service.process.log();
        assert.match(serviceLog, /The broker has not answered \(a confirm of a message to/);
        assert.match(serviceLog, /Broker connection restored/);

        // The endpoint's link goes silent while a task runs: the confirm of its result never
        // comes, and a task sent to the old consumer would never arrive.
        const gate = join(dir, "gate");
        const third = fx.submitToRegisteredFunction(fnId, [3, sideEffects, gate]);
        await until(
          "the third task to start",
          async () => (await sideEffectRuns(sideEffects)).includes("3"),
        );
        assert.ok(publicLink.silence(endpointLinks) > 0, "the endpoint's link was found");
        await Deno.writeTextFile(gate, "");
        assert.equal(
          await settledWithin(third, 45_000, "the task that ran as the link went silent"),
          3,
        );
        const fourth = fx.submitToRegisteredFunction(fnId, [4, sideEffects, null]);
        assert.equal(
          await settledWithin(fourth, 45_000, "a task after the endpoint's link went"),
          4,
        );
        assert.match(await endpoint.process.log(), /The broker has not answered/);

        // Each task ran once: a task published again after a missing confirm is not run again.
        const runs = await sideEffectRuns(sideEffects);
        assert.deepEqual(runs, ["1", "2", "3", "4"]);
      } finally {
        await endpoint.process.stop();
      }
    } finally {
      await service.process.stop();
    }
  },
});
