/**
 * The running service: opens the store, connects to the broker, starts the result processor and
 * serves the HTTP app. Lifecycle `"starting" | "running" | "draining" | "stopped"`.
 *
 * Several processes may serve one address with a PostgreSQL store and one broker: everything they
 * must agree on (tokens, tasks, endpoint status, idempotency keys) is in the database, and each
 * consumes its share of the `results` queue. Only the rate limiter counts per process.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { createApp } from "./app.ts";
import type { AppSettings } from "./context.ts";
import { BrokerCredentials, vhostOf } from "./broker_credentials.ts";
import { BrokerManagement, parseManagementUrls } from "./broker_management.ts";
import { parseBrokerUrls } from "../sdk/_broker_addresses.ts";
import { type QueueType, QueueTypeMismatch, RESULTS_QUEUE, ServiceBroker } from "./broker.ts";
import { chooseQueueType, type QueueTypeSetting } from "./queue_type_choice.ts";
import { ResultProcessor } from "./result_processor.ts";
import { OutboxRelay } from "./outbox_relay.ts";
import { serviceMetrics } from "./metrics.ts";
import { openStore } from "./open_store.ts";
import type { Store } from "./store.ts";
import { redactUrl } from "./_url.ts";
import { signInSettingsFromEnv } from "./sign_in_guard.ts";

export { redactUrl };

const log = getLogger(["funcx", "service"]);

/** Settings of a service process. */
export interface ServiceConfig extends AppSettings {
  /** The store: a `postgres://` or `postgresql://` URL, or a SQLite file path. */
  database: string;
  /**
   * AMQP URL the service itself uses (it declares the topology); for a cluster, the nodes' URLs
   * separated by commas.
   */
  amqpUrl: string;
  /**
   * The type of the durable task and `results` queues: `quorum` for a cluster, `classic` for a
   * broker of one node, or `auto`: the type the queues already have, else classic when the
   * management API shows one node and quorum otherwise (see `queue_type_choice.ts`).
   * @default "auto"
   */
  queueType?: QueueTypeSetting;
  /**
   * Seconds the broker may take to confirm a message or declare a queue before the connection is
   * ended as dead and replaced. @default 30
   */
  brokerDeadlineS?: number;
  /**
   * SQLite store: sync every commit to disk before answering, so that a machine that loses
   * power loses no accepted task (ignored for PostgreSQL, which does so by default). @default false
   */
  syncCommits?: boolean;
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /**
   * Management API URL with admin credentials, for scoped broker logins (for a cluster, several
   * nodes' URLs separated by commas); none: shared login.
   */
  managementUrl: string | undefined;
}

/** Lifecycle states of {@linkcode FuncxService}. */
export type ServiceState = "starting" | "running" | "draining" | "stopped";

/** A running service. */
export class FuncxService {
  #state: ServiceState = "starting";
  readonly #store: Store;
  readonly #broker: ServiceBroker;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #purge: ReturnType<typeof setInterval>;
  readonly processor: ResultProcessor;
  readonly #outbox: OutboxRelay;

  private constructor(
    store: Store,
    broker: ServiceBroker,
    server: Deno.HttpServer<Deno.NetAddr>,
    processor: ResultProcessor,
    outbox: OutboxRelay,
  ) {
    this.#outbox = outbox;
    this.#store = store;
    this.#broker = broker;
    this.#server = server;
    this.processor = processor;
    this.#purge = setInterval(() => {
      store.purgeExpired().then((n) => {
        if (n.tasks + n.tokens + n.deviceCodes + n.idempotencyKeys > 0) {
          log.info(
            "Purged {tasks} tasks, {tokens} tokens, {deviceCodes} device codes and " +
              "{idempotencyKeys} idempotency keys past their expiry",
            { ...n },
          );
        }
      }, (err) => log.error("Purge failed: {err}", { err }));
    }, 60_000);
    this.#state = "running";
  }

  /** Starts a service with `config`. */
  static async start(config: ServiceConfig): Promise<FuncxService> {
    // Bad addresses fail here, not at the first registration.
    parseBrokerUrls(config.amqpUrl, "broker URL");
    parseBrokerUrls(config.publicAmqpUrl, "public broker URL");
    const management = config.managementUrl
      ? new BrokerManagement(parseManagementUrls(config.managementUrl))
      : undefined;
    const vhost = vhostOf(parseBrokerUrls(config.amqpUrl)[0]!);
    const store = await openStore(config.database, {
      taskTtlS: config.taskTtlS,
      syncCommits: config.syncCommits ?? false,
    });
    if (config.syncCommits && store.kind === "sqlite") {
      log.info("SQLite store: every commit is synced to disk before it is answered");
    } else if (config.syncCommits) {
      log.info("--sync-commits is for SQLite: PostgreSQL syncs by its synchronous_commit setting");
    }
    const setting = config.queueType ?? "auto";
    let queueType: QueueType;
    if (setting === "auto") {
      const choice = await chooseQueueType(management, vhost);
      log.info("Task and results queues: {type} ({why})", { type: choice.type, why: choice.why });
      queueType = choice.type;
    } else {
      queueType = setting;
    }
    const connect = (type: QueueType) =>
      ServiceBroker.connect(config.amqpUrl, {
        queueType: type,
        ...(config.brokerDeadlineS ? { answerDeadlineMs: config.brokerDeadlineS * 1000 } : {}),
      });
    let broker: ServiceBroker;
    try {
      try {
        broker = await connect(queueType);
      } catch (err) {
        // `auto` keeps the type the queues have, also when the management API could not say.
        const mismatch = err instanceof QueueTypeMismatch && err.queue === RESULTS_QUEUE;
        if (setting !== "auto" || !mismatch) throw err;
        queueType = queueType === "quorum" ? "classic" : "quorum";
        log.warn("Task and results queues: {type} (the {queue} queue already is one)", {
          type: queueType,
          queue: RESULTS_QUEUE,
        });
        broker = await connect(queueType);
      }
    } catch (err) {
      await store.close();
      throw new Error(
        `Cannot connect to the broker at "${redactUrl(config.amqpUrl)}": ${String(err)}`,
        { cause: err },
      );
    }
    const processor = new ResultProcessor(store, broker, config.maxResultBytes);
    const credentials = management ? new BrokerCredentials(management, vhost) : undefined;
    if (!credentials) {
      log.warn(
        "No broker management URL: endpoints and users get the service's own broker login",
      );
    }
    await broker.consumeResults((batch) => processor.handle(batch));
    const outbox = new OutboxRelay(store, broker);
    broker.onConnectionRestored(() => {
      serviceMetrics.brokerReconnects.inc();
      outbox.sweep();
    });
    const app = createApp({
      store,
      broker,
      outbox,
      credentials,
      settings: { ...config, signIn: config.signIn ?? signInSettingsFromEnv(Deno.env.toObject()) },
    });
    const { promise: listening, resolve } = Promise.withResolvers<void>();
    const server = Deno.serve({
      hostname: config.hostname,
      port: config.port,
      onListen: () => resolve(),
    }, app.fetch);
    await listening;
    return new FuncxService(store, broker, server, processor, outbox);
  }

  /** Current lifecycle state. */
  get state(): ServiceState {
    return this.#state;
  }

  /** The address the HTTP server listens on. */
  get address(): string {
    const a = this.#server.addr;
    return `http://${a.hostname}:${a.port}`;
  }

  /** Whether the broker connection is up now (it is re-established by itself when lost). */
  get brokerConnected(): boolean {
    return this.#broker.connected;
  }

  /** Stops serving, closes the broker and the store; idempotent. */
  async stop(): Promise<void> {
    if (this.#state === "draining" || this.#state === "stopped") return;
    this.#state = "draining";
    clearInterval(this.#purge);
    await this.#server.shutdown();
    await this.#outbox.close();
    await this.#broker.close();
    await this.#store.close();
    this.#state = "stopped";
  }
}
