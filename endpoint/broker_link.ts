/**
 * The endpoint's link to the broker: it holds the live {@linkcode BrokerSession}, replaces a lost
 * one, retrying with capped, jittered exponential backoff for as long as the outage lasts (or
 * until `max_consecutive_failures`, when that is set), and sends the results waiting in the
 * {@linkcode ResultJournal} before a new session takes any task. It keeps
 * `daemon_status.json` saying whether the link is up. What arrives on the task queue, and what
 * the link's ups and downs mean for tasks, is the {@linkcode Endpoint}'s business. With a broker
 * cluster, each attempt tries every node, from the one after the node it lost.
 *
 * @module
 */
import type amqp from "amqplib";
import { getLogger } from "@logtape/logtape";
import type { EndpointRegistration } from "../sdk/client.ts";
import { backoffDelay } from "../sdk/_backoff.ts";
import { brokerAddresses, brokerHost } from "../sdk/_broker_addresses.ts";
import { type BrokerSession, EndpointRefused, openSession } from "./broker_session.ts";
import type { EndpointConfig } from "./config.ts";
import type { ResultJournal } from "./result_journal.ts";
import { type DaemonStatus, writeStatusFile } from "./status_file.ts";

const log = getLogger(["funcx", "endpoint"]);

/** The daemon gave up reaching the broker after `max_consecutive_failures` attempts. */
export class BrokerUnreachable extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BrokerUnreachable";
  }
}

/**
 * Tasks per `task_batch` message the service sends at most; the broker's prefetch counts
 * messages, so the endpoint's `prefetch` (in tasks) becomes this many times fewer messages.
 */
const TASKS_PER_MESSAGE = 100;

/** What a {@linkcode BrokerLink} needs from its endpoint. */
export interface BrokerLinkOptions {
  /** What registration returned: where the broker and the queues are. */
  registration: EndpointRegistration;
  /** The validated config (prefetch, reconnect delays, `max_consecutive_failures`). */
  config: EndpointConfig;
  /** The endpoint's directory, for `daemon_status.json`. */
  endpointDir: string;
  /** The results to send before a new session takes tasks. */
  journal: ResultJournal;
  /** Each message of the task queue. */
  onMessage(session: BrokerSession, msg: amqp.ConsumeMessage): void;
  /** A session is up and consuming. */
  onConnected(): void;
  /** The live session was lost; a reconnect follows. */
  onLost(): void;
  /** The reconnect after a lost session gave up. */
  onGiveUp(error: Error): void;
  /** A journaled result was confirmed by the broker. */
  onJournalSent(taskId: string): void;
  /** Tasks being run now, for the log and the status file. */
  tasksRunning(): number;
}

/** The live session to the broker, and its replacement when it is lost. */
export class BrokerLink {
  readonly #options: BrokerLinkOptions;
  #session: BrokerSession | undefined;
  #closed = false;
  #wake: (() => void) | undefined;
  #flushing: Promise<void> | undefined;
  #flushAgain = false;
  /** The broker node to try first: the live one, or the one after the node lost. */
  #node = 0;
  #everConnected = false;

  /** Builds a link; nothing connects until {@linkcode connect}. */
  constructor(options: BrokerLinkOptions) {
    this.#options = options;
  }

  /** The live session, if the link is up. */
  get session(): BrokerSession | undefined {
    return this.#session;
  }

  /** The journal flush in progress, if any. */
  get flushing(): Promise<void> | undefined {
    return this.#flushing;
  }

  /** Failed attempts in a row after which the daemon gives up (`Infinity`: never). */
  get maxFailures(): number {
    return this.#options.config.max_consecutive_failures || Infinity;
  }

  /**
   * The broker's `host:port` (of the node connected to, or tried first), without credentials,
   * for the log and the status file.
   */
  get brokerAddress(): string {
    const urls = brokerAddresses(this.#options.registration.task_queue_info);
    return brokerHost(urls[this.#node % urls.length]!);
  }

  /**
   * Reconnects with capped, jittered exponential backoff after `failures` failed attempts in a
   * row (the last one failing with `lastError`, or a lost connection when 0). Returns once
   * connected or stopping; throws {@linkcode EndpointRefused}, or {@linkcode BrokerUnreachable}
   * once `max_consecutive_failures` attempts failed.
   */
  async connectWithRetry(failures: number, lastError?: Error): Promise<void> {
    const config = this.#options.config;
    const max = this.maxFailures;
    const broker = this.brokerAddress;
    const since = new Date().toISOString();
    for (;;) {
      if (failures >= max) {
        throw new BrokerUnreachable(
          `Cannot reach the broker at ${broker} after ${failures} consecutive attempts: ` +
            `${lastError?.message}`,
          { cause: lastError },
        );
      }
      const delayMs = backoffDelay(failures + 1, {
        minMs: config.reconnect_delay_min * 1000,
        maxMs: config.reconnect_delay_max * 1000,
      });
      const reason = lastError
        ? ((lastError as { code?: unknown }).code ?? lastError.message)
        : "connection lost";
      const limit = max === Infinity ? "" : ` of ${max}`;
      const wait = delayMs >= 10_000
        ? String(Math.round(delayMs / 1000))
        : (delayMs / 1000).toFixed(1);
      // Pre-formatted (braces escaped): the log line reads as a sentence, without quoted values.
      const text = `Broker at ${broker} unreachable (${String(reason)}); retry ${failures + 1}` +
        `${limit} in ${wait} s; ${this.#options.journal.pending} results waiting on disk, ` +
        `${this.#options.tasksRunning()} tasks running`;
      log.warn(text.replaceAll("{", "{{").replaceAll("}", "}}"));
      this.#writeStatus({
        state: "disconnected",
        since,
        attempt: failures,
        nextRetryAt: new Date(Date.now() + delayMs).toISOString(),
        lastError: lastError ? lastError.message : "connection lost",
      });
      await new Promise<void>((r) => {
        const t = setTimeout(r, delayMs);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.#wake = undefined;
      if (this.#closed) return;
      try {
        await this.connect();
        return;
      } catch (err) {
        if (err instanceof EndpointRefused) throw err;
        lastError = err as Error;
        failures++;
      }
    }
  }

  /** Opens a session: sends the journal, then consumes the task queue. */
  async connect(): Promise<void> {
    const { registration, config } = this.#options;
    const session = await openSession(registration, {
      prefetch: Math.max(2, Math.ceil(config.prefetch / TASKS_PER_MESSAGE)),
      deadlineS: config.broker_deadline,
      startAt: this.#node,
      refuseIfConsumed: !this.#everConnected,
      onLost: (s, err) => this.#onSessionLost(s, err),
      onMessage: (s, msg) => this.#options.onMessage(s, msg),
      beforeConsume: (s) => this.#flushJournal(s),
    });
    if (this.#closed) {
      await session.close();
      return;
    }
    this.#session = session;
    this.#node = session.node;
    this.#everConnected = true;
    log.info("Connected to the broker at {broker}; consuming {queue}", {
      broker: this.brokerAddress,
      queue: registration.task_queue_info.queue,
    });
    this.#writeStatus({
      state: "connected",
      since: new Date().toISOString(),
      attempt: 0,
      nextRetryAt: null,
      lastError: null,
    });
    this.#options.onConnected();
  }

  /** Flushes the journal on the live session (once at a time; again if asked meanwhile). */
  flushSoon(): void {
    if (this.#flushing) {
      this.#flushAgain = true;
      return;
    }
    const session = this.#session;
    if (!session) return;
    this.#flushing = this.#flushJournal(session).catch((err) => session.lost(err as Error))
      .finally(() => {
        this.#flushing = undefined;
        if (this.#flushAgain) {
          this.#flushAgain = false;
          this.flushSoon();
        }
      });
  }

  /** Stops reconnecting (a wait for the next attempt ends now); the session stays open. */
  stopReconnecting(): void {
    this.#closed = true;
    this.#wake?.();
  }

  /** Closes the live session, if any. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#session?.close();
    this.#session = undefined;
  }

  #writeStatus(
    s: Omit<DaemonStatus, "broker" | "resultsWaiting" | "tasksRunning">,
  ): void {
    void writeStatusFile(this.#options.endpointDir, {
      ...s,
      broker: this.brokerAddress,
      resultsWaiting: this.#options.journal.pending,
      tasksRunning: this.#options.tasksRunning(),
    }).catch((err) => log.debug("Cannot write the status file: {err}", { err: String(err) }));
  }

  /**
   * Sends the journaled results the broker has not confirmed (pipelined, in order) and marks
   * each confirmed. Runs before any new task is taken on a new session.
   */
  async #flushJournal(session: BrokerSession): Promise<void> {
    const journal = this.#options.journal;
    if (journal.pending === 0) return;
    let sent = 0;
    let sends: Promise<void>[] = [];
    for await (const { taskId, packed } of journal.unconfirmed()) {
      sends.push(
        session.publish(packed).then(() => {
          journal.confirm(taskId);
          this.#options.onJournalSent(taskId);
        }),
      );
      sent++;
      if (sends.length >= 1000) {
        await Promise.all(sends);
        sends = [];
      }
    }
    await Promise.all(sends);
    if (sent > 0) log.info("Sent {n} journaled results", { n: sent });
  }

  #onSessionLost(session: BrokerSession, err: Error): void {
    if (session !== this.#session) return;
    this.#session = undefined;
    this.#node = session.node + 1;
    if (this.#closed) return;
    this.#options.onLost();
    log.warn("Lost the broker connection ({err}); tasks keep running, results wait on disk", {
      err: err.message,
    });
    void session.close();
    this.connectWithRetry(0).catch((e) => this.#options.onGiveUp(e as Error));
  }
}
