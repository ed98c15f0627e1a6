/**
 * The service's side of RabbitMQ: it declares the whole topology (the `tasks` direct exchange and
 * one durable `<endpoint_id>.tasks` queue per endpoint; the `results` topic exchange and the
 * `results` queue bound with `*.results`), publishes tasks with publisher confirms, and hands
 * messages from `results` to the result processor.
 *
 * @module
 */
import amqp from "amqplib";
import { Buffer } from "node:buffer";
import { getLogger } from "@logtape/logtape";

const log = getLogger(["funcx", "service", "broker"]);

/** Exchange that carries tasks to endpoints. */
export const TASKS_EXCHANGE = "tasks";
/** Exchange that carries results and status reports from endpoints. */
export const RESULTS_EXCHANGE = "results";
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

/** One task message to publish. */
export interface OutgoingTask {
  endpointId: string;
  taskId: string;
  body: Uint8Array;
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
}

/** The service's broker connection: topology, task publishing, result consumption. */
export class ServiceBroker {
  readonly #conn: amqp.ChannelModel;
  readonly #pub: amqp.ConfirmChannel;
  readonly #admin: amqp.Channel;
  readonly #options: Required<ServiceBrokerOptions>;
  #consumer: amqp.Channel | undefined;
  #declared = new Set<string>();
  #closed = false;
  #onLost: ((err: Error) => void) | undefined;

  private constructor(
    conn: amqp.ChannelModel,
    pub: amqp.ConfirmChannel,
    admin: amqp.Channel,
    options: Required<ServiceBrokerOptions>,
  ) {
    this.#conn = conn;
    this.#pub = pub;
    this.#admin = admin;
    this.#options = options;
    conn.on("error", (err: Error) => log.error("Broker connection error: {err}", { err }));
    conn.on("close", (err?: Error) => {
      if (this.#closed) return;
      const e = err ?? new Error("Broker connection closed");
      log.error("Broker connection lost: {message}", { message: e.message });
      this.#onLost?.(e);
    });
  }

  /** Connects and declares the shared part of the topology. */
  static async connect(url: string, options: ServiceBrokerOptions = {}): Promise<ServiceBroker> {
    const conn = await amqp.connect(url, { noDelay: true });
    try {
      const pub = await conn.createConfirmChannel();
      const admin = await conn.createChannel();
      await admin.assertExchange(TASKS_EXCHANGE, "direct", { durable: true });
      await admin.assertExchange(RESULTS_EXCHANGE, "topic", { durable: true });
      await admin.assertQueue(RESULTS_QUEUE, { durable: true });
      await admin.bindQueue(RESULTS_QUEUE, RESULTS_EXCHANGE, "*.results");
      return new ServiceBroker(conn, pub, admin, {
        resultPrefetch: options.resultPrefetch ?? 200,
        maxBatch: options.maxBatch ?? 100,
      });
    } catch (e) {
      await conn.close().catch(() => {});
      throw e;
    }
  }

  /** Called once if the connection drops while open (the service then exits to be restarted). */
  onConnectionLost(fn: (err: Error) => void): void {
    this.#onLost = fn;
  }

  /** Declares an endpoint's durable task queue and binds it to `tasks`. */
  async ensureEndpointQueue(endpointId: string): Promise<string> {
    const queue = taskQueueName(endpointId);
    if (this.#declared.has(queue)) return queue;
    await this.#admin.assertQueue(queue, { durable: true });
    await this.#admin.bindQueue(queue, TASKS_EXCHANGE, queue);
    this.#declared.add(queue);
    return queue;
  }

  /** Puts a control message (for example a shutdown command) on an endpoint's task queue. */
  async publishToEndpoint(endpointId: string, body: Uint8Array): Promise<void> {
    await this.ensureEndpointQueue(endpointId);
    await new Promise<void>((resolve, reject) => {
      this.#pub.publish(
        TASKS_EXCHANGE,
        taskQueueName(endpointId),
        Buffer.from(body.buffer, body.byteOffset, body.byteLength),
        { persistent: true, mandatory: true },
        (
          err: unknown,
        ) => (err ? reject(new Error("Broker refused a command", { cause: err })) : resolve()),
      );
    });
  }

  /** Declares a user's result queue for a task group; it expires after `idleMs` unused. */
  async declareResultQueue(queue: string, idleMs: number): Promise<void> {
    if (this.#declared.has(queue)) return;
    await this.#admin.assertQueue(queue, { durable: true, arguments: { "x-expires": idleMs } });
    this.#declared.add(queue);
  }

  /** Publishes messages straight to queues (default exchange) and waits for the confirms. */
  async forward(messages: ReadonlyArray<{ queue: string; body: Uint8Array }>): Promise<void> {
    await Promise.all(messages.map((m) =>
      new Promise<void>((resolve, reject) => {
        this.#pub.publish(
          "",
          m.queue,
          Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength),
          { persistent: true, timestamp: Math.floor(Date.now() / 1000) },
          (
            err: unknown,
          ) => (err ? reject(new Error("Broker refused a result", { cause: err })) : resolve()),
        );
      })
    ));
  }

  /** Deletes an endpoint's task queue (its consumer, if any, is cancelled by the broker). */
  async deleteEndpointQueue(endpointId: string): Promise<void> {
    const queue = taskQueueName(endpointId);
    this.#declared.delete(queue);
    await this.#admin.deleteQueue(queue);
  }

  /** Publishes tasks as persistent, mandatory messages and waits for every broker confirm. */
  async publishTasks(tasks: readonly OutgoingTask[]): Promise<void> {
    const confirms: Promise<void>[] = [];
    for (const t of tasks) {
      await this.ensureEndpointQueue(t.endpointId);
      confirms.push(
        new Promise<void>((resolve, reject) => {
          this.#pub.publish(
            TASKS_EXCHANGE,
            taskQueueName(t.endpointId),
            Buffer.from(t.body.buffer, t.body.byteOffset, t.body.byteLength),
            { persistent: true, mandatory: true, messageId: t.taskId },
            (err: unknown) =>
              err
                ? reject(new Error(`Broker refused task "${t.taskId}"`, { cause: err }))
                : resolve(),
          );
        }),
      );
    }
    await Promise.all(confirms);
  }

  /**
   * Consumes `results`, handing messages to `handler` in batches; the batch is acked (one
   * multiple-ack) after the handler resolves, so a crash before that redelivers it.
   */
  async consumeResults(handler: ResultBatchHandler): Promise<void> {
    const ch = await this.#conn.createChannel();
    this.#consumer = ch;
    await ch.prefetch(this.#options.resultPrefetch);
    const pending: amqp.ConsumeMessage[] = [];
    let running = false;
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
            ch.ack(last, true);
          } catch (err) {
            // The store could not take the batch: give it back to the broker to retry later.
            log.error("Result batch failed, requeueing {n} messages: {err}", {
              n: batch.length,
              err,
            });
            ch.nack(last, true, true);
            await new Promise((r) => setTimeout(r, 500));
          }
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
    try {
      await this.#conn.close();
    } catch {
      // already closed
    }
  }
}
