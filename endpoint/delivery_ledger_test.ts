/**
 * The ledger's settling of deliveries, with a stand-in session that records its acks: a delivery
 * that arrives on a session the link has not made current yet (the first deliveries after a
 * reconnect, often redelivered tasks that ran here) is still acked, and a failed one returned.
 *
 * @module
 */
import assert from "node:assert/strict";
import type amqp from "amqplib";
import type { BrokerLink } from "./broker_link.ts";
import type { BrokerSession } from "./broker_session.ts";
import { DeliveryLedger } from "./delivery_ledger.ts";
import { ResultJournal } from "./result_journal.ts";

Deno.test("a delivery settles on its own session, even one the link has not made current yet", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-ledger-" });
  const journal = await ResultJournal.open(dir);
  try {
    const calls: string[] = [];
    const opening = {
      ack: (m: amqp.ConsumeMessage) => calls.push(`ack ${m.fields.deliveryTag}`),
      nack: (m: amqp.ConsumeMessage) => calls.push(`nack ${m.fields.deliveryTag}`),
    } as unknown as BrokerSession;
    // The link still has no session: the new one is opening and its consumer already delivers.
    const link = { session: undefined } as unknown as BrokerLink;
    const ledger = new DeliveryLedger({
      prefetch: 2,
      journal,
      link,
      counts: { resultsPublished: 0, resultsStored: 0 },
    });
    const msg = (tag: number) => ({ fields: { deliveryTag: tag } }) as amqp.ConsumeMessage;
    ledger.settle({ msg: msg(1), session: opening, open: 1, requeue: false }, true);
    // A message of two tasks is settled once both are.
    const pair = { msg: msg(2), session: opening, open: 2, requeue: false };
    ledger.settle(pair, true);
    assert.deepEqual(calls, ["ack 1"]);
    ledger.settle(pair, false);
    assert.deepEqual(calls, ["ack 1", "nack 2"]);
  } finally {
    await journal.close();
    await Deno.remove(dir, { recursive: true });
  }
});
