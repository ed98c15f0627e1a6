import assert from "node:assert/strict";
import { AckCoalescer, type Delivery } from "./ack_coalescer.ts";

function setup(tags: number[]) {
  const sent: string[] = [];
  const acks = new AckCoalescer<Delivery>((m, multiple) =>
    sent.push(`${m.fields.deliveryTag}${multiple ? "+" : ""}`)
  );
  const msgs = new Map(tags.map((deliveryTag) => [deliveryTag, { fields: { deliveryTag } }]));
  for (const m of msgs.values()) acks.delivered(m);
  return { sent, acks, msg: (tag: number) => msgs.get(tag)! };
}

Deno.test("AckCoalescer acks a turn's acks of the oldest deliveries as one multiple ack", async () => {
  const { sent, acks, msg } = setup([1, 2, 3, 4, 5]);
  for (const tag of [3, 1, 2]) acks.ack(msg(tag));
  assert.deepEqual(sent, []); // nothing before the end of the turn
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sent, ["3+"]);
  for (const tag of [4, 5]) acks.ack(msg(tag));
  acks.flush();
  assert.deepEqual(sent, ["3+", "5+"]);
});

Deno.test("AckCoalescer acks one by one what an older unsettled delivery precedes", () => {
  const { sent, acks, msg } = setup([1, 2, 3, 4]);
  for (const tag of [1, 3, 4]) acks.ack(msg(tag));
  acks.flush();
  // 2 still runs: a multiple ack at 3 or 4 would settle it too.
  assert.deepEqual(sent.sort(), ["1+", "3", "4"]);
  acks.ack(msg(2));
  acks.flush();
  assert.deepEqual(sent.slice(3), ["2+"]);
});

Deno.test("AckCoalescer lets nacked and rejected deliveries not hold acks back", () => {
  const { sent, acks, msg } = setup([1, 2, 3]);
  acks.settled(msg(1)); // nacked by the caller, at once
  acks.ack(msg(2));
  acks.ack(msg(3));
  acks.flush();
  assert.deepEqual(sent, ["3+"]);
});

Deno.test("AckCoalescer holds no ack back behind a long-running delivery", () => {
  const sent: number[] = [];
  const acks = new AckCoalescer<Delivery>((m) => sent.push(m.fields.deliveryTag));
  const long = { fields: { deliveryTag: 1 } };
  acks.delivered(long);
  for (let tag = 2; tag < 10_002; tag++) {
    const m = { fields: { deliveryTag: tag } };
    acks.delivered(m);
    acks.ack(m);
    if (tag % 100 === 0) acks.flush();
  }
  acks.flush();
  assert.equal(sent.length, 10_000); // each acked alone, none held back
  acks.ack(long);
  acks.flush();
  assert.equal(sent.at(-1), 1);
});
