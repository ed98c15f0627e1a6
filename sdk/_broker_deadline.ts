/**
 * A deadline for the broker's answers. A publisher confirm, or the reply to a queue declare, may
 * never come while the connection still looks alive: a link that went silent (a network that
 * drops packets instead of resetting), or a broker that lost track of a message during a quorum
 * queue's leader change. AMQP heartbeats notice the first only after two missed beats (two
 * minutes at RabbitMQ's default) and the second never. Whoever waits on the broker without a
 * deadline can wait forever: the service's outbox relay did, once, and every task after it waited
 * with it. So a wait on the broker gets a deadline, and a missed one ends the connection, which
 * the caller's usual reconnect then replaces (a message whose confirm was missing is published
 * again, and its receiver drops the repeat by task id).
 *
 * @module
 */

/** How long the broker may take to confirm a message or answer a declare. @default 30 s */
export const BROKER_ANSWER_DEADLINE_MS = 30_000;

/** The broker did not answer in time; the connection is presumed dead and is replaced. */
export class BrokerSilent extends Error {
  /** What was waited for, and for how long. */
  constructor(what: string, ms: number) {
    super(
      `The broker has not answered (${what}) in ${ms / 1000} s; the connection is presumed ` +
        `dead and is replaced`,
    );
    this.name = "BrokerSilent";
  }
}

/**
 * `wait`, or {@linkcode BrokerSilent} once `ms` pass without it settling; then `onSilent` runs
 * once (it should end the connection) with that error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BrokerSilent, withBrokerDeadline } from "./_broker_deadline.ts";
 * let ended: Error | undefined;
 * const never = new Promise<void>(() => {});
 * await assert.rejects(
 *   withBrokerDeadline(never, 10, "a confirm", (err) => (ended = err)),
 *   BrokerSilent,
 * );
 * assert.ok(ended instanceof BrokerSilent);
 * assert.equal(await withBrokerDeadline(Promise.resolve(7), 10, "a reply", () => {}), 7);
 * ```
 */
export function withBrokerDeadline<T>(
  wait: Promise<T>,
  ms: number,
  what: string,
  onSilent: (err: BrokerSilent) => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new BrokerSilent(what, ms);
      reject(err);
      onSilent(err);
    }, ms);
  });
  return Promise.race([wait, late]).finally(() => clearTimeout(timer));
}

/**
 * Ends an amqplib connection at once, without the AMQP close handshake (which would wait on the
 * same silent broker): its socket is destroyed, and the connection's `close` event follows with
 * `err`.
 */
export function destroyConnection(conn: object, err: Error): void {
  const stream = (conn as { connection?: { stream?: { destroy?: (e: Error) => void } } })
    .connection?.stream;
  stream?.destroy?.(err);
}
