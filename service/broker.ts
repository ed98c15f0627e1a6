/**
 * The service's side of RabbitMQ: it declares the whole topology (the `tasks` direct exchange and
 * one durable `<endpoint_id>.tasks` queue per endpoint; the `results` topic exchange and the
 * `results` queue bound with `*.results.#`; the `task_group_results` direct exchange that carries
 * results to users' result streams), publishes tasks with publisher confirms, and hands messages
 * from `results` to the result processor.
 *
 * A user's task group has one routing key (its route), `user-<user_id>.<group_id>`; every result
 * stream attached to the group (one per SDK process) has a queue of its own bound to it on
 * `task_group_results`, and bound on `results` to `*.results.<route>`. A task carries its group's
 * route, and the endpoint publishes its result as `<endpoint_id>.results.<route>`: one broker hop
 * takes it both to `results` (the service stores it) and to every stream of the group. The
 * service forwards a result on `task_group_results` only when a stream may have missed it (it came
 * without a route, or a stream attached after its task was submitted).
 *
 * The broker may be a cluster: the service takes a list of node addresses, connects to the first
 * that answers and, when its node is lost, to the next live one. The queues that hold tasks and
 * results (`<endpoint_id>.tasks`, `results`) are quorum queues, replicated on the cluster's
 * nodes, so losing a minority of the nodes loses nothing confirmed (a broker of one node may
 * have them as classic queues instead, `queueType`, which cost less per message and lose
 * nothing confirmed either, since a persistent message is confirmed once it is on disk). A
 * result stream's queue stays a classic queue on one node: it holds only copies (the store has
 * every result, and the stream asks for a new queue and reads the store when its queue's node is
 * gone), and a quorum queue per SDK process would cost a replicated log each.
 *
 * @module
 */
import amqp from "amqplib";
import { Buffer } from "node:buffer";
import { getLogger } from "@logtape/logtape";
import { backoffDelay, sleep } from "../sdk/_backoff.ts";
import { brokerHost, connectFirst, parseBrokerUrls } from "../sdk/_broker_addresses.ts";
import {
  BROKER_ANSWER_DEADLINE_MS,
  destroyConnection,
  withBrokerDeadline,
} from "../sdk/_broker_deadline.ts";

const log = getLogger(["funcx", "service", "broker"]);

/** Exchange that carries tasks to endpoints. */
export const TASKS_EXCHANGE = "tasks";
/** Exchange that carries results and status reports from endpoints. */
export const RESULTS_EXCHANGE = "results";
/** Exchange that carries results to the result streams of task groups. */
export const GROUP_RESULTS_EXCHANGE = "task_group_results";
/** The queue the service consumes results from. */
export const RESULTS_QUEUE = "results";

/** The name of an endpoint's task queue (also its routing key). */
export function taskQueueName(endpointId: string): string {
  return `${endpointId}.tasks`;
}

/** The routing key an endpoint publishes its results with. */
export function resultRoutingKey(endpointId: string): string {
  return `${endpointId}.results`;
}

/**
 * The routing key of results that `endpointId` publishes with a task group's `route`: the broker
 * takes them to the `results` queue and to the group's streams in one hop.
 */
export function directResultKey(endpointId: string, route: string): string {
  return `${resultRoutingKey(endpointId)}.${route}`;
}

/** One message taken from the `results` queue. */
export interface IncomingResult {
  routingKey: string;
  body: Uint8Array;
  deliveryTag: number;
}

/** Handles a batch of messages from `results`; they are acked once it resolves. */
export type ResultBatchHandler = (batch: IncomingResult[]) => Promise<void> | void;

/** Options of {@linkcode ServiceBroker.connect}. */
export interface ServiceBrokerOptions {
  /** Unacked `results` messages the broker may push at once (each may hold a batch). @default 200 */
  resultPrefetch?: number;
  /** Most messages handed to the result handler in one batch. @default 100 */
  maxBatch?: number;
  /**
   * The type of the durable task and `results` queues: `quorum` (replicated on a cluster's
   * nodes) or `classic` (one node's disk; for a broker that is one node). @default "quorum"
   */
  queueType?: QueueType;
  /**
   * Milliseconds the broker may take to confirm a published message or to declare an endpoint's
   * queue; past that the connection is presumed dead, ended and replaced, and what was not
   * confirmed is published again (see `sdk/_broker_deadline.ts`). @default 30_000
   */
  answerDeadlineMs?: number;
}

/** The type of the durable queues that hold tasks and results. */
export type QueueType = "quorum" | "classic";

/** The queue types {@linkcode ServiceBrokerOptions.queueType} takes. */
export const QUEUE_TYPES: readonly QueueType[] = ["quorum", "classic"];

/** The broker connection is down (the service is reconnecting); the request can be retried. */
export class BrokerUnavailable extends Error {
  /** Builds the error. */
  constructor(message = "The broker connection is down; the service is reconnecting") {
    super(message);
    this.name = "BrokerUnavailable";
  }
}

const FORWARD_REFUSED = "Broker refused a result";

/** The arguments a durable queue of tasks or results of `type` is declared with. */
export function durableQueueArgs(type: QueueType): Readonly<Record<string, unknown>> {
  return { "x-queue-type": type };
}

/**
 * A queue exists as another type than the service is set to keep it as (a queue left by an older
 * version, or by a service with another `--queue-type`): the broker refused to declare it
 * (PRECONDITION_FAILED).
 */
export class QueueTypeMismatch extends Error {
  /** The queue's name. */
  readonly queue: string;
  /**
   * Builds the error for `queue` in `vhost`, wanted as `wanted`; `arg` is the argument the broker
   * named.
   */
  constructor(
    queue: string,
    vhost: string,
    arg: string,
    wanted: QueueType,
    options?: ErrorOptions,
  ) {
    const other = wanted === "quorum" ? "classic" : "quorum";
    super(
      `Cannot declare queue "${queue}" in vhost "${vhost}" as a ${wanted} queue: it exists with ` +
        `another "${arg}" (a ${other} queue, left by an older version or by a service started ` +
        `with "--queue-type ${other}"). Either start the service with "--queue-type ${other}", ` +
        `or stop the service and its endpoints, let the queue drain or move its messages (for ` +
        `example with a shovel), delete it ("rabbitmqctl delete_queue ${queue} -p ${vhost}"), ` +
        `then start the service again: it declares the queue anew`,
      options,
    );
    this.name = "QueueTypeMismatch";
    this.queue = queue;
  }
}

/**
 * Declares a durable queue of `type`; idempotent. Uses a channel of its own, since the broker
 * closes the channel that a refused declare was sent on.
 */
async function declareDurableQueue(
  conn: amqp.ChannelModel,
  queue: string,
  type: QueueType,
): Promise<void> {
  const ch = await conn.createChannel();
  ch.on("error", () => {});
  try {
    await ch.assertQueue(queue, { durable: true, arguments: { ...durableQueueArgs(type) } });
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    const arg = /inequivalent arg '([^']+)'/.exec(String(e?.message))?.[1];
    if (e?.code === 406 && arg !== undefined) {
      const vhost = /in vhost '([^']*)'/.exec(String(e.message))?.[1] ?? "/";
      throw new QueueTypeMismatch(queue, vhost, arg, type, { cause: err });
    }
    throw err;
  }
  await ch.close().catch(() => {});
}

/** One live connection with its channels. */
interface Link {
  conn: amqp.ChannelModel;
  pub: amqp.ConfirmChannel;
  admin: amqp.Channel;
}

/**
 * The service's broker connection: topology, task publishing, result consumption. When the
 * connection drops it reconnects with jittered backoff (0.5 s doubling up to 10 s) for as long
 * as the service runs, declares the topology again and resumes consuming results; meanwhile
 * publishing fails at once with {@linkcode BrokerUnavailable}, which routes answer as 503.
 */
export class ServiceBroker {
  readonly #urls: readonly string[];
  /** The node to try first at the next connect: the live one, or the one after a lost one. */
  #node = 0;
  readonly #options: Required<ServiceBrokerOptions>;
  #link: Link | undefined;
  #handler: ResultBatchHandler | undefined;
  #declared = new Set<string>();
  #closed = false;
  #reconnecting: Promise<void> | undefined;
  #onLost: ((err: Error) => void) | undefined;
  #onRestored: (() => void) | undefined;
  #refusalLoggedAt = 0;
  /** Forwarded results the broker refused since the start (see {@linkcode forward}). */
  forwardsRefused = 0;

  private constructor(urls: readonly string[], options: Required<ServiceBrokerOptions>) {
    this.#urls = urls;
    this.#options = options;
  }

  /**
   * Connects and declares the shared part of the topology; the first connection must work.
   * `urls` is one AMQP URL, a comma-separated list of them, or an array: the nodes of a cluster,
   * tried in order.
   */
  static async connect(
    urls: string | readonly string[],
    options: ServiceBrokerOptions = {},
  ): Promise<ServiceBroker> {
    const list = typeof urls === "string" ? parseBrokerUrls(urls) : [...urls];
    const broker = new ServiceBroker(list, {
      resultPrefetch: options.resultPrefetch ?? 200,
      maxBatch: options.maxBatch ?? 100,
      queueType: options.queueType ?? "quorum",
      answerDeadlineMs: options.answerDeadlineMs ?? BROKER_ANSWER_DEADLINE_MS,
    });
    await broker.#open();
    return broker;
  }

  /** Whether the connection is up now. */
  get connected(): boolean {
    return this.#link !== undefined;
  }

  /** `host:port` of the node the service is connected to (or tries first), for logs. */
  get node(): string {
    return brokerHost(this.#urls[this.#node % this.#urls.length]!);
  }

  async #open(): Promise<void> {
    const { value: conn, index } = await connectFirst(
      this.#urls,
      this.#node,
      (url) =>
        amqp.connect(url, {
          noDelay: true,
          timeout: 10_000,
          clientProperties: { connection_name: `funcx-service ${Deno.pid}` },
        }),
    );
    this.#node = index;
    try {
      const pub = await conn.createConfirmChannel();
      const admin = await conn.createChannel();
      await admin.assertExchange(TASKS_EXCHANGE, "direct", { durable: true });
      await admin.assertExchange(RESULTS_EXCHANGE, "topic", { durable: true });
      await declareDurableQueue(conn, RESULTS_QUEUE, this.#options.queueType);
      // `<endpoint_id>.results`, and `<endpoint_id>.results.<route>` for results that go to a task
      // group's streams at the same time.
      await admin.bindQueue(RESULTS_QUEUE, RESULTS_EXCHANGE, "*.results.#");
      await admin.assertExchange(GROUP_RESULTS_EXCHANGE, "direct", { durable: true });
      const link: Link = { conn, pub, admin };
      conn.on("error", (err: Error) => log.error("Broker connection error: {err}", { err }));
      conn.on("close", (err?: Error) => {
        if (this.#link !== link) return;
        this.#link = undefined;
        this.#declared.clear();
        if (this.#closed) return;
        const e = err ?? new Error("Broker connection closed");
        const node = this.node;
        // Another node of a cluster is tried first; a lone node is tried again.
        this.#node = index + 1;
        log.error("Broker connection lost ({message}) at {node}; reconnecting", {
          node,
          message: e.message,
        });
        this.#onLost?.(e);
        this.#reconnect();
      });
      this.#link = link;
      if (this.#handler) await this.#consume(link, this.#handler);
    } catch (e) {
      await conn.close().catch(() => {});
      throw e;
    }
  }

  #reconnect(): void {
    if (this.#reconnecting || this.#closed) return;
    this.#reconnecting = (async () => {
      for (let attempt = 1; !this.#closed; attempt++) {
        await sleep(backoffDelay(attempt, { minMs: 500, maxMs: 10_000 }));
        if (this.#closed) return;
        try {
          await this.#open();
          log.info("Broker connection restored to {node} (attempt {attempt})", {
            attempt,
            node: this.node,
          });
          this.#onRestored?.();
          return;
        } catch (err) {
          if (err instanceof QueueTypeMismatch) log.error("{err}", { err: err.message });
          log.warn("Broker reconnect attempt {attempt} failed: {err}", {
            attempt,
            err: String(err),
          });
        }
      }
    })().finally(() => (this.#reconnecting = undefined));
  }

  /** The live connection, or {@linkcode BrokerUnavailable}. */
  #live(): Link {
    if (!this.#link) throw new BrokerUnavailable();
    return this.#link;
  }

  /** `wait` on `link`'s broker, which ends the connection when it does not answer in time. */
  #deadline<T>(link: Link, wait: Promise<T>, what: string): Promise<T> {
    return withBrokerDeadline(wait, this.#options.answerDeadlineMs, what, (err) => {
      if (this.#link !== link) return;
      log.error("{err}", { err: err.message });
      destroyConnection(link.conn, err);
    });
  }

  /** Called each time the connection drops (the service goes on and reconnects). */
  onConnectionLost(fn: (err: Error) => void): void {
    this.#onLost = fn;
  }

  /** Called each time the connection is back after a loss. */
  onConnectionRestored(fn: () => void): void {
    this.#onRestored = fn;
  }

  /** Declares an endpoint's durable task queue and binds it to `tasks`. */
  async ensureEndpointQueue(endpointId: string): Promise<string> {
    const queue = taskQueueName(endpointId);
    if (this.#declared.has(queue)) return queue;
    const link = this.#live();
    await this.#deadline(
      link,
      (async () => {
        await declareDurableQueue(link.conn, queue, this.#options.queueType);
        await link.admin.bindQueue(queue, TASKS_EXCHANGE, queue);
      })(),
      `declaring queue "${queue}"`,
    );
    this.#declared.add(queue);
    return queue;
  }

  /** Puts a control message (for example a shutdown command) on an endpoint's task queue. */
  async publishToEndpoint(endpointId: string, body: Uint8Array): Promise<void> {
    await this.ensureEndpointQueue(endpointId);
    await this.#confirmed(
      TASKS_EXCHANGE,
      taskQueueName(endpointId),
      body,
      { persistent: true, mandatory: true },
      "Broker refused a command",
    );
  }

  /**
   * Publishes one message on the live link; resolves with its broker confirm. A confirm that does
   * not come in time ends the link (its other unconfirmed messages fail with it).
   */
  #confirmed(
    exchange: string,
    routingKey: string,
    body: Uint8Array,
    options: amqp.Options.Publish,
    refusal: string,
  ): Promise<void> {
    const link = this.#live();
    const confirm = new Promise<void>((resolve, reject) => {
      link.pub.publish(
        exchange,
        routingKey,
        Buffer.from(body.buffer, body.byteOffset, body.byteLength),
        options,
        (err: unknown) => (err ? reject(new Error(refusal, { cause: err })) : resolve()),
      );
    });
    return this.#deadline(link, confirm, `a confirm of a message to "${routingKey}"`);
  }

  /**
   * Declares a result stream's own queue and binds it to its task group's routing key. The queue
   * is durable (it outlives a broker restart with the results in it) and goes away once it has
   * had no consumer for `idleMs`.
   */
  async declareStreamQueue(queue: string, routingKey: string, idleMs: number): Promise<void> {
    const { admin } = this.#live();
    await admin.assertQueue(queue, { durable: true, arguments: { "x-expires": idleMs } });
    await admin.bindQueue(queue, GROUP_RESULTS_EXCHANGE, routingKey);
    // Results an endpoint publishes with the group's route come straight from the endpoint.
    await admin.bindQueue(queue, RESULTS_EXCHANGE, directResultKey("*", routingKey));
  }

  /**
   * Publishes messages to the result streams bound to each routing key and waits for the
   * confirms; a key no stream is bound to drops its message (the store has every result). They
   * are not persistent: the broker keeps them in memory only, and a stream that finds its queue
   * emptied by a broker restart reads what it missed from the store when it reconnects.
   *
   * A message the broker refuses (nacks) is not an error: in a cluster, a stream's queue on a
   * node that is down makes the broker refuse what is routed to it, although every live queue
   * bound to the key took its copy. Its stream asks for a new queue and reads the store, and
   * every stream reads the store now and then anyway. Only a lost link throws.
   */
  async forward(messages: ReadonlyArray<{ routingKey: string; body: Uint8Array }>): Promise<void> {
    const timestamp = Math.floor(Date.now() / 1000);
    const sent = await Promise.allSettled(messages.map((m) =>
      this.#confirmed(
        GROUP_RESULTS_EXCHANGE,
        m.routingKey,
        m.body,
        { persistent: false, timestamp },
        FORWARD_REFUSED,
      )
    ));
    let refused = 0;
    for (const s of sent) {
      if (s.status === "fulfilled") continue;
      if ((s.reason as Error)?.message !== FORWARD_REFUSED) throw s.reason;
      refused++;
    }
    if (refused > 0) {
      this.forwardsRefused += refused;
      if (Date.now() - this.#refusalLoggedAt > 10_000) {
        this.#refusalLoggedAt = Date.now();
        log.warn(
          "The broker refused {n} forwarded results (a result stream queue on a node that is " +
            "down?); their streams read them from the store ({total} so far)",
          { n: refused, total: this.forwardsRefused },
        );
      }
    }
  }

  /** Deletes an endpoint's task queue (its consumer, if any, is cancelled by the broker). */
  async deleteEndpointQueue(endpointId: string): Promise<void> {
    const queue = taskQueueName(endpointId);
    this.#declared.delete(queue);
    await this.#live().admin.deleteQueue(queue);
  }

  /**
   * Publishes messages (task batches) to endpoints' task queues as persistent, mandatory messages
   * and waits for every broker confirm.
   */
  async publishToEndpoints(
    messages: ReadonlyArray<{ endpointId: string; body: Uint8Array }>,
  ): Promise<void> {
    const confirms: Promise<void>[] = [];
    for (const m of messages) {
      await this.ensureEndpointQueue(m.endpointId);
      const confirm = this.#confirmed(
        TASKS_EXCHANGE,
        taskQueueName(m.endpointId),
        m.body,
        { persistent: true, mandatory: true },
        `Broker refused tasks for "${m.endpointId}"`,
      );
      // Observed below; meanwhile a link lost during the next queue declare must not leave it
      // rejected with nobody listening.
      confirm.catch(() => {});
      confirms.push(confirm);
    }
    await Promise.all(confirms);
  }

  /**
   * Consumes `results`, handing messages to `handler` in batches; the batch is acked (one
   * multiple-ack) after the handler resolves, so a crash before that redelivers it.
   */
  async consumeResults(handler: ResultBatchHandler): Promise<void> {
    this.#handler = handler;
    await this.#consume(this.#live(), handler);
  }

  /** Starts consuming `results` on `link` (again after each reconnect). */
  async #consume(link: Link, handler: ResultBatchHandler): Promise<void> {
    const ch = await link.conn.createChannel();
    await ch.prefetch(this.#options.resultPrefetch);
    const pending: amqp.ConsumeMessage[] = [];
    let running = false;
    // On a channel that closed meanwhile, an ack is moot: the broker redelivers those messages
    // on the next connection, and the store takes each result once.
    const settle = (fn: () => void) => {
      try {
        fn();
      } catch (err) {
        log.warn("Cannot settle a result batch on a closed channel: {err}", { err: String(err) });
        pending.length = 0;
      }
    };
    const drain = async () => {
      if (running) return;
      running = true;
      try {
        while (pending.length > 0) {
          const batch = pending.splice(0, this.#options.maxBatch);
          const last = batch[batch.length - 1]!;
          try {
            await handler(batch.map((m) => ({
              routingKey: m.fields.routingKey,
              body: new Uint8Array(m.content.buffer, m.content.byteOffset, m.content.byteLength),
              deliveryTag: m.fields.deliveryTag,
            })));
          } catch (err) {
            // The store could not take the batch: give it back to the broker to retry later.
            log.error("Result batch failed, requeueing {n} messages: {err}", {
              n: batch.length,
              err,
            });
            settle(() => ch.nack(last, true, true));
            await new Promise((r) => setTimeout(r, 500));
            continue;
          }
          settle(() => ch.ack(last, true));
        }
      } finally {
        running = false;
      }
    };
    await ch.consume(RESULTS_QUEUE, (msg) => {
      if (!msg) return;
      pending.push(msg);
      // Collect everything that arrived in this turn before writing one transaction
      // (setImmediate: setTimeout(0) waits a couple of milliseconds in Deno).
      if (pending.length === 1) setImmediate(drain);
    });
  }

  /** Closes channels and the connection; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const link = this.#link;
    this.#link = undefined;
    try {
      await link?.conn.close();
    } catch {
      // already closed
    }
  }
}
