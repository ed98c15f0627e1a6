/**
 * Tests of the private RabbitMQ cluster against the real server: three nodes join one cluster,
 * a quorum queue declared on one node is served by the others, and it keeps its messages when
 * one node is killed and when another is stopped cleanly.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { RabbitCluster } from "./rabbitmq_cluster.ts";
import { until } from "./until.ts";

async function publish(url: string, queue: string, bodies: string[]): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    for (const b of bodies) ch.sendToQueue(queue, Buffer.from(b), { persistent: true });
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

async function drain(url: string, queue: string): Promise<string[]> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    const out: string[] = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) return out;
      out.push(m.content.toString());
    }
  } finally {
    await conn.close();
  }
}

Deno.test("RabbitCluster joins 3 nodes and a quorum queue survives losing two of them in turn", async () => {
  await using cluster = await RabbitCluster.start({ nodes: 3 });
  const [a, b, c] = cluster.nodes as [
    typeof cluster.nodes[0],
    typeof cluster.nodes[0],
    typeof cluster.nodes[0],
  ];
  assert.equal(new Set(cluster.nodes.map((n) => n.info.nodeName)).size, 3, "distinct names");
  assert.equal(new Set(cluster.amqpUrls).size, 3, "distinct AMQP ports");

  const conn = await amqp.connect(a.info.amqpUrl);
  const ch = await conn.createChannel();
  await ch.assertQueue("q", { durable: true, arguments: { "x-queue-type": "quorum" } });
  await conn.close();
  await publish(b.info.amqpUrl, "q", ["one", "two"]);

  await a.stopNode({ kill: true });
  // Until the survivors elect a new leader, the queue nacks what is published to it.
  let nacks = 0;
  await until(
    "a confirmed publish after the leader's node died",
    () => publish(c.info.amqpUrl, "q", ["three"]).then(() => true, () => (nacks++, false)),
    30_000,
    200,
  );
  await a.startNode();
  await cluster.waitRunning(3);

  await b.stopNode();
  const left = await drain(a.info.amqpUrl, "q");
  // A nacked publish may still have been written: the queue holds "three" once or more.
  assert.deepEqual(left.slice(0, 3), ["one", "two", "three"], `after ${nacks} nacks`);
  assert.ok(left.slice(3).every((m) => m === "three"), `after ${nacks} nacks`);
  assert.equal(cluster.liveNode(), a);
  await cluster.stop();
  assert.ok(cluster.nodes.every((n) => n.state === "stopped"));
});
