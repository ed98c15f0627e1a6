/**
 * `--queue-type auto` (the service's default) against the test run's real broker, a node of its
 * own: a new deployment gets classic queues; one whose `results` queue exists keeps its type (an
 * upgrade from quorum queues starts and keeps them, and classic queues stay classic when the
 * management API does not answer); a broker the service cannot ask gets quorum queues. The
 * cluster side (quorum on 3 nodes) is checked by the cluster-loss run (`chaos/cluster_loss.ts`).
 */
import assert from "node:assert/strict";
import { type QueueType, ServiceBroker, taskQueueName } from "../service/broker.ts";
import { BrokerManagement, parseManagementUrl } from "../service/broker_management.ts";
import { chooseQueueType } from "../service/queue_type_choice.ts";
import {
  type BrokerAccess,
  clientOf,
  createVhost,
  deleteVhost,
  managementUrlOf,
  queueTypeOf,
  sharedBroker,
  startService,
} from "./harness/stack.ts";

/** A fresh vhost, with a `results` queue of `existing` type when given; removed by `using`. */
async function vhostWith(access: BrokerAccess, existing?: QueueType) {
  const vhost = `qchoice-${crypto.randomUUID().slice(0, 8)}`;
  const url = await createVhost(access, vhost);
  if (existing) await (await ServiceBroker.connect(url, { queueType: existing })).close();
  return { vhost, url, [Symbol.asyncDispose]: () => deleteVhost(access, vhost) };
}

Deno.test("chooseQueueType: classic for a new deployment on one node, else the type it has", async () => {
  const access = await sharedBroker();
  const management = new BrokerManagement([parseManagementUrl(managementUrlOf(access))]);
  {
    await using v = await vhostWith(access);
    assert.deepEqual(await chooseQueueType(management, v.vhost), {
      type: "classic",
      why: "a new deployment on a broker of one node",
    });
  }
  for (const existing of ["quorum", "classic"] as const) {
    await using v = await vhostWith(access, existing);
    const choice = await chooseQueueType(management, v.vhost);
    assert.equal(choice.type, existing);
    assert.equal(choice.why, `the "results" queue already is a ${existing} queue`);
  }
});

Deno.test("chooseQueueType: quorum when it cannot ask the broker", async () => {
  const none = await chooseQueueType(undefined, "/");
  assert.equal(none.type, "quorum");
  assert.match(none.why, /no management URL/);
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = dead.addr.port;
  dead.close();
  const silent = new BrokerManagement([parseManagementUrl(`http://a:b@127.0.0.1:${port}`)]);
  const unanswered = await chooseQueueType(silent, "/");
  assert.equal(unanswered.type, "quorum");
  assert.match(unanswered.why, /the management API did not answer/);
});

Deno.test("funcx-service serve: auto gives a new deployment classic queues and keeps an old one's quorum queues", async () => {
  const access = await sharedBroker();
  for (const existing of [undefined, "quorum"] as const) {
    await using v = await vhostWith(access, existing);
    const dir = await Deno.makeTempDir({ prefix: "funcx-qchoice-" });
    const service = await startService({ dir, amqpUrl: v.url, broker: access });
    try {
      const want = existing ?? "classic";
      // The service declares an endpoint's queue when it registers.
      const { endpoint_id } = await clientOf(service).registerEndpoint("qchoice");
      assert.equal(await queueTypeOf(access, v.vhost, "results"), want);
      assert.equal(await queueTypeOf(access, v.vhost, taskQueueName(endpoint_id)), want);
      const log = await Deno.readTextFile(`${dir}/service.log`);
      assert.match(log, new RegExp(`Task and results queues: "${want}"`));
    } finally {
      await service.process.stop();
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("funcx-service serve: auto keeps classic queues when the management API does not answer", async () => {
  const access = await sharedBroker();
  await using v = await vhostWith(access, "classic");
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = dead.addr.port;
  dead.close();
  const dir = await Deno.makeTempDir({ prefix: "funcx-qchoice-" });
  // Quorum is the guess without an answer; the `results` queue says otherwise, and wins.
  const service = await startService({
    dir,
    amqpUrl: v.url,
    args: ["--management-url", `http://admin:secret@127.0.0.1:${port}`],
  });
  try {
    assert.equal(await queueTypeOf(access, v.vhost, "results"), "classic");
    const log = await Deno.readTextFile(`${dir}/service.log`);
    assert.match(log, /Task and results queues: "quorum" \("the management API did not answer/);
    assert.match(log, /Task and results queues: "classic" \(the "results" queue already is one\)/);
  } finally {
    await service.process.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
