/**
 * A result stream closed at any moment of its start leaves no broker connection behind: one left
 * open would keep a script from ever exiting. Real broker, a queue of its own.
 */
import assert from "node:assert/strict";
import amqp from "amqplib";
import { ResultWatcher } from "../sdk/result_watcher.ts";
import { type BrokerAccess, createVhost, deleteVhost, sharedBroker } from "./harness/stack.ts";
import { TcpProxy } from "./harness/tcp_proxy.ts";
import { until } from "./harness/until.ts";

/** The connections the broker has open in `vhost` (its management API). */
async function connectionsIn(access: BrokerAccess, vhost: string): Promise<number> {
  const res = await fetch(
    `${access.managementUrl}/api/vhosts/${encodeURIComponent(vhost)}/connections`,
    { headers: { authorization: `Basic ${btoa(`${access.user}:${access.password}`)}` } },
  );
  assert.ok(res.ok, `management answered ${res.status}`);
  return (await res.json() as unknown[]).length;
}

Deno.test("a result watcher closed while it opens its channel leaves no connection open", async () => {
  const access = await sharedBroker();
  const vhost = `watcher-${crypto.randomUUID().slice(0, 8)}`;
  const url = await createVhost(access, vhost);
  await using proxy = TcpProxy.start({ targetPort: Number(new URL(url).port) });
  try {
    const setup = await amqp.connect(url);
    const ch = await setup.createChannel();
    const { queue } = await ch.assertQueue("", { exclusive: false, autoDelete: false });
    await setup.close();
    const viaProxy = new URL(url);
    viaProxy.port = String(proxy.port);
    const watcher = new ResultWatcher(
      () => Promise.resolve({ task_group_id: "g", connection_url: viaProxy.href, queue }),
      { onResult: () => {}, onAttached: () => {}, onDown: () => {} },
    );
    // The first frame on channel 1 is `channel.open`: the connection is up, and the watcher
    // waits for its channel. It is closed right then.
    let closing: Promise<void> | undefined;
    proxy.tap((direction, chunk) => {
      if (!closing && direction === "up" && chunk[0] === 1 && chunk[1] === 0 && chunk[2] === 1) {
        closing = watcher.close();
      }
    });
    await until("the watcher to open its channel", () => closing !== undefined);
    await closing;
    assert.equal(watcher.state, "stopped");
    await until(
      "its connection closed",
      async () => await connectionsIn(access, vhost) === 0,
      30_000,
    );
    assert.equal(watcher.state, "stopped");
  } finally {
    await deleteVhost(access, vhost).catch(() => {});
  }
});
