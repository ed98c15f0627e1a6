/**
 * The queues that hold tasks and results are quorum queues, declared idempotently (a second
 * service on the same vhost declares them again without error), and a classic queue of the same
 * name, as an older version left it, stops the service with a message naming the queue and
 * what to do; a service set to classic queues (a broker of one node) declares classic ones.
 * Against the test run's real broker.
 */
import assert from "node:assert/strict";
import amqp from "amqplib";
import { QueueTypeMismatch, ServiceBroker, taskQueueName } from "../service/broker.ts";
import { createVhost, deleteVhost, queueTypeOf, sharedBroker } from "./harness/stack.ts";

Deno.test("ServiceBroker declares task and results queues as quorum queues, idempotently", async () => {
  const access = await sharedBroker();
  const vhost = `quorum-${crypto.randomUUID().slice(0, 8)}`;
  const url = await createVhost(access, vhost);
  try {
    const a = await ServiceBroker.connect(url);
    const b = await ServiceBroker.connect([url]);
    try {
      await a.ensureEndpointQueue("ep-1");
      await b.ensureEndpointQueue("ep-1");
      assert.equal(await queueTypeOf(access, vhost, "results"), "quorum");
      assert.equal(await queueTypeOf(access, vhost, taskQueueName("ep-1")), "quorum");
    } finally {
      await a.close();
      await b.close();
    }
  } finally {
    await deleteVhost(access, vhost);
  }
});

Deno.test("ServiceBroker names a classic queue left by an older version and what to do", async () => {
  const access = await sharedBroker();
  const vhost = `classic-${crypto.randomUUID().slice(0, 8)}`;
  const url = await createVhost(access, vhost);
  try {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertQueue(taskQueueName("old-ep"), { durable: true });
    await conn.close();

    const broker = await ServiceBroker.connect(url);
    try {
      const err = await broker.ensureEndpointQueue("old-ep").then(
        () => assert.fail("a classic task queue was taken as a quorum queue"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof QueueTypeMismatch, String(err));
      assert.equal(err.queue, "old-ep.tasks");
      assert.match(err.message, /queue "old-ep\.tasks" in vhost "classic-/);
      assert.match(err.message, /delete it \("rabbitmqctl delete_queue old-ep\.tasks/);
      // The refused declare cost only its own channel: the link still works.
      assert.equal(await broker.ensureEndpointQueue("new-ep"), "new-ep.tasks");
      assert.ok(broker.connected);
    } finally {
      await broker.close();
    }

    const conn2 = await amqp.connect(url);
    const ch2 = await conn2.createChannel();
    await ch2.deleteQueue("results");
    await ch2.assertQueue("results", { durable: true });
    await conn2.close();
    await assert.rejects(ServiceBroker.connect(url), (e: unknown) => {
      assert.ok(e instanceof QueueTypeMismatch);
      assert.equal(e.queue, "results");
      return true;
    });
  } finally {
    await deleteVhost(access, vhost);
  }
});

Deno.test("ServiceBroker with queueType classic declares classic queues and names a quorum one", async () => {
  const access = await sharedBroker();
  const vhost = `qtype-${crypto.randomUUID().slice(0, 8)}`;
  const url = await createVhost(access, vhost);
  try {
    const broker = await ServiceBroker.connect(url, { queueType: "classic" });
    try {
      await broker.ensureEndpointQueue("ep-1");
      assert.equal(await queueTypeOf(access, vhost, "results"), "classic");
      assert.equal(await queueTypeOf(access, vhost, taskQueueName("ep-1")), "classic");
    } finally {
      await broker.close();
    }
    // The same vhost under the default (quorum) is refused, with the other way out named.
    await assert.rejects(ServiceBroker.connect(url), (e: unknown) => {
      assert.ok(e instanceof QueueTypeMismatch, String(e));
      assert.match(e.message, /as a quorum queue: .*a classic queue/);
      assert.match(e.message, /start the service with "--queue-type classic"/);
      return true;
    });
  } finally {
    await deleteVhost(access, vhost);
  }
});

Deno.test("ServiceBroker connects to the next node of its list when the first is down", async () => {
  const access = await sharedBroker();
  const vhost = `list-${crypto.randomUUID().slice(0, 8)}`;
  const url = await createVhost(access, vhost);
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = dead.addr.port;
  dead.close();
  const down = new URL(url);
  down.port = String(deadPort);
  try {
    const broker = await ServiceBroker.connect(`${down}, ${url}`);
    try {
      assert.equal(broker.node, `127.0.0.1:${new URL(url).port}`);
    } finally {
      await broker.close();
    }
    await assert.rejects(
      ServiceBroker.connect([down.toString(), down.toString()]),
      /Cannot reach any of 2 broker nodes \(127\.0\.0\.1:\d+: .*; 127\.0\.0\.1:\d+: /,
    );
  } finally {
    await deleteVhost(access, vhost);
  }
});

Deno.test("funcx-service serve refuses an unknown --queue-type and names the three it takes", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli/funcx_service.ts", import.meta.url).pathname,
      "serve",
      "--database",
      ":memory:",
      "--queue-type",
      "fast",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.notEqual(out.code, 0);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /Invalid --queue-type "fast": expected auto, quorum or classic/,
  );
});
