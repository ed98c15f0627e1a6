/**
 * One connection of the endpoint to the broker: a confirm channel for results and status
 * reports, and a channel with the exclusive consumer of the endpoint's task queue. A session is
 * used until it is lost, then thrown away; the {@linkcode Endpoint} opens a new one to reconnect.
 * Only passive declares: the service owns the topology.
 *
 * When the broker is a cluster, registration names every node (`connection_urls`): a session
 * connects to the first node that answers, from the one its link asks to try first.
 *
 * Acks go through an {@linkcode AckCoalescer}: a confirmed result batch releases hundreds of tasks
 * at once, and their acks leave as one frame. Nacks and rejects are sent at once.
 *
 * @module
 */
import amqp from "amqplib";
import { Buffer } from "node:buffer";
import type { EndpointRegistration } from "../sdk/client.ts";
import { AckCoalescer } from "./ack_coalescer.ts";
import { brokerAddresses, brokerHost, connectFirst } from "../sdk/_broker_addresses.ts";
import { destroyConnection, withBrokerDeadline } from "../sdk/_broker_deadline.ts";

/** Another process consumes this endpoint's task queue; the broker refused this one. */
export class EndpointRefused extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "EndpointRefused";
  }
}

/** Hooks of {@linkcode openSession}. */
export interface SessionHooks {
  /** Unacked tasks held at once. */
  prefetch: number;
  /**
   * Seconds the broker may take to confirm a result or answer a declare (`broker_deadline`); past
   * it the session is ended as dead, and the result (safe in the journal) is sent on the next one.
   */
  deadlineS: number;
  /** The index of the broker node (in registration's list) to try first. */
  startAt: number;
  /**
   * Refuse ({@linkcode EndpointRefused}) when the task queue has another consumer: true when the
   * daemon starts. Not on a reconnect, when the daemon's own old consumer may linger a while on
   * a lost node.
   */
  refuseIfConsumed: boolean;
  /** Called once when the connection or a channel goes away unexpectedly. */
  onLost(session: BrokerSession, err: Error): void;
  /** Called for each message on the task queue. */
  onMessage(session: BrokerSession, msg: amqp.ConsumeMessage): void;
  /** Runs after the channels are open and before the consumer starts. */
  beforeConsume(session: BrokerSession): Promise<void>;
}

/** A live connection to the broker. */
export interface BrokerSession {
  /** The index of its broker node in registration's list. */
  readonly node: number;
  /** Its broker node's `host:port`. */
  readonly address: string;
  /**
   * The largest result data (characters) that may be published with a route: the service's
   * limit, from registration (0 when the service gave none: no result goes with a route).
   */
  readonly routedResultLimit: number;
  /**
   * Publishes a packed message to `results`; resolves once the broker confirmed it. With the
   * `route` of a task group's result streams (a task's `result_route`), the routing key is
   * `<endpoint_id>.results.<route>`: the broker takes the message to the service and to the
   * group's streams at once.
   */
  publish(body: Uint8Array, route?: string): Promise<void>;
  /** Acks a task message (no-op once the session is lost). */
  ack(msg: amqp.ConsumeMessage): void;
  /** Returns a task message to the queue (no-op once the session is lost). */
  nack(msg: amqp.ConsumeMessage): void;
  /** Drops an unreadable task message for good. */
  reject(msg: amqp.ConsumeMessage): void;
  /** Marks the session lost (for example after a publish was not confirmed). */
  lost(err: Error): void;
  /** Stops consuming; results can still be published. */
  cancelConsumer(): Promise<void>;
  /** Closes the connection; idempotent. */
  close(): Promise<void>;
}

function isExclusiveRefusal(err: unknown): boolean {
  const e = err as { code?: number; message?: string };
  return e?.code === 403 || e?.code === 405 || /exclusive|RESOURCE_LOCKED/i.test(e?.message ?? "");
}

/** Connects, opens both channels, runs `beforeConsume`, then starts the exclusive consumer. */
export async function openSession(
  registration: EndpointRegistration,
  hooks: SessionHooks,
): Promise<BrokerSession> {
  const urls = brokerAddresses(registration.task_queue_info);
  const { value: conn, index } = await connectFirst(
    urls,
    hooks.startAt,
    (url) =>
      amqp.connect(url, {
        noDelay: true,
        timeout: 10_000,
        clientProperties: { connection_name: `funcx-endpoint ${registration.endpoint_id}` },
      }),
  );
  const deadlineMs = hooks.deadlineS * 1000;
  let isLost = false;
  let closing = false;
  let consumerTag: string | undefined;
  const kw = registration.result_queue_info.queue_publish_kwargs;
  // Channel errors come with a close; the close handlers below report them.
  const ignore = () => {};
  conn.on("error", ignore);
  let results: amqp.ConfirmChannel | undefined;
  let tasks: amqp.Channel | undefined;
  const acks = new AckCoalescer<amqp.ConsumeMessage>((msg, multiple) => {
    if (isLost || !tasks) return;
    try {
      tasks.ack(msg, multiple);
    } catch {
      // Channel closing: the broker requeues the message.
    }
  });

  const session: BrokerSession = {
    node: index,
    address: brokerHost(urls[index]!),
    routedResultLimit: registration.result_queue_info.max_result_bytes ?? 0,
    publish(body, route) {
      const confirm = new Promise<void>((resolve, reject) => {
        if (isLost || !results) return reject(new Error("The broker connection is lost"));
        try {
          results.publish(
            kw.exchange,
            route ? `${kw.routing_key}.${route}` : kw.routing_key,
            Buffer.from(body.buffer, body.byteOffset, body.byteLength),
            { persistent: true, mandatory: kw.mandatory },
            (err: unknown) =>
              err ? reject(new Error("The broker refused a message", { cause: err })) : resolve(),
          );
        } catch (err) {
          reject(err);
        }
      });
      // A confirm that never comes would hold the results behind it: end the session instead.
      return withBrokerDeadline(confirm, deadlineMs, "a confirm of results", (err) => {
        session.lost(err);
        destroyConnection(conn, err);
      });
    },
    ack(msg) {
      if (isLost || !tasks) return;
      acks.ack(msg);
    },
    nack(msg) {
      if (isLost || !tasks) return;
      acks.settled(msg);
      try {
        tasks.nack(msg, false, true);
      } catch {
        // Channel closing: the broker requeues the message.
      }
    },
    reject(msg) {
      if (isLost || !tasks) return;
      acks.settled(msg);
      try {
        tasks.reject(msg, false);
      } catch {
        // Channel closing.
      }
    },
    lost(err) {
      if (isLost || closing) return;
      isLost = true;
      hooks.onLost(session, err);
    },
    async cancelConsumer() {
      if (isLost || !tasks || !consumerTag) return;
      await tasks.cancel(consumerTag).catch(() => {});
      consumerTag = undefined;
    },
    async close() {
      if (closing) return;
      acks.flush();
      closing = true;
      await conn.close().catch(() => {});
    },
  };
  conn.on(
    "close",
    (err?: Error) => session.lost(err ?? new Error("The broker closed the connection")),
  );

  try {
    results = await conn.createConfirmChannel();
    results.on("error", ignore);
    results.on("close", () => session.lost(new Error("The broker closed the result channel")));
    await results.checkExchange(registration.result_queue_info.exchange);
    tasks = await conn.createChannel();
    let refusal: Error | undefined;
    tasks.on("error", (err: Error) => {
      if (isExclusiveRefusal(err)) refusal = err;
    });
    tasks.on("close", () => session.lost(new Error("The broker closed the task channel")));
    const queue = registration.task_queue_info.queue;
    // A quorum queue accepts a second "exclusive" consumer, so a twin daemon is found by the
    // consumer count: before consuming, and after (two starting at once both refuse).
    const twin = async (mine: number) => {
      const { consumerCount } = await tasks!.checkQueue(queue);
      if (hooks.refuseIfConsumed && consumerCount > mine) {
        throw new EndpointRefused(
          `Endpoint "${registration.endpoint_id}" is already running elsewhere: "${queue}" has ` +
            `${consumerCount - mine} other consumer(s); stop the other daemon first`,
        );
      }
    };
    await twin(0);
    await tasks.prefetch(hooks.prefetch);
    await hooks.beforeConsume(session);
    try {
      const reply = await tasks.consume(queue, (msg) => {
        if (!msg) return;
        acks.delivered(msg);
        hooks.onMessage(session, msg);
      }, { exclusive: true, noAck: false });
      consumerTag = reply.consumerTag;
      await twin(1);
    } catch (err) {
      if (err instanceof EndpointRefused) throw err;
      if (isExclusiveRefusal(err) || refusal) {
        throw new EndpointRefused(
          `Endpoint "${registration.endpoint_id}" is already running elsewhere: the broker ` +
            `refused a second consumer of "${queue}" (${(err as Error).message})`,
          { cause: err },
        );
      }
      throw err;
    }
    return session;
  } catch (err) {
    closing = true;
    await conn.close().catch(() => {});
    throw err;
  }
}
