/**
 * The endpoint daemon's core, after registration: it consumes its task queue (exclusive
 * consumer), runs each task in the engine and publishes the result to `results` with publisher
 * confirms, and at the same time appends it to the {@linkcode ResultJournal} on disk. A task
 * message is acked only once its result is safe: confirmed by the broker, or synced to the
 * journal, whichever comes first; a redelivered task whose result is journaled is acked, not run.
 * When the broker connection goes away the engine keeps running ("clutch disengages, engine
 * continues"); results wait in the journal and are sent first after the reconnect, which is
 * retried with capped, jittered exponential backoff for as long as the outage lasts (or until
 * `max_consecutive_failures`, when that is set).
 * Status reports go out every heartbeat period, and a final one with `heartbeat_period: 0`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { EndpointRegistration } from "../sdk/client.ts";
import {
  ActorName,
  type CommandMessage,
  encodeResult,
  type Message,
  nowNs,
  packMessage,
  packResultBatch,
  type ResultMessage,
  type TaskContainer,
  type TaskMessage,
  TaskState,
  unpackMessage,
} from "../sdk/protocol/mod.ts";
import { createEngine, type Engine, PoolClosed } from "./engine/mod.ts";
import { IdleReclaimer } from "./engine/idle_reclaimer.ts";
import { failureResult } from "./engine/failure.ts";
import type { ContainerConfig } from "./engine/container.ts";
import type { EndpointConfig } from "./config.ts";
import { ResultBatcher } from "./result_batcher.ts";
import { ResultJournal } from "./result_journal.ts";
import { type DaemonStatus, removeStatusFile, writeStatusFile } from "./status_file.ts";
import { backoffDelay } from "../sdk/_backoff.ts";
import { type BrokerSession, EndpointRefused, openSession } from "./broker_session.ts";
import { IdleTracker } from "./idle_tracker.ts";
import { AuditLog } from "./audit_log.ts";
import { resolve as resolvePath } from "node:path";

export { EndpointRefused } from "./broker_session.ts";

const log = getLogger(["funcx", "endpoint"]);

export { ENDPOINT_VERSION } from "./version.ts";

/** The daemon gave up reaching the broker after `max_consecutive_failures` attempts. */
export class BrokerUnreachable extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BrokerUnreachable";
  }
}

/** Options of {@linkcode Endpoint.start}. */
export interface EndpointOptions {
  /** What registration returned. */
  registration: EndpointRegistration;
  /** The validated config. */
  config: EndpointConfig;
  /** The endpoint's directory (for `result_journal/` and `daemon_status.json`). */
  endpointDir: string;
  /** Worker command line (tests and compiled binaries). @default the engine's own */
  workerCommand?: readonly string[];
  /**
   * An engine already started (a multi-user endpoint's); the endpoint closes it when it stops.
   * @default one made from `config.engine`
   */
  engine?: Engine;
}

/** Lifecycle of an endpoint. */
export type EndpointState = "starting" | "running" | "disconnected" | "draining" | "stopped";

/** Why an endpoint ended: a clean stop (local, remote or idle) or an error. */
export type EndpointEnd =
  | { kind: "stopped"; reason: string }
  | { kind: "failed"; error: Error };

/** Counters since start. */
export interface EndpointStats {
  tasksReceived: number;
  resultsPublished: number;
  resultsStored: number;
  duplicatesSkipped: number;
  reconnects: number;
}

/**
 * One message from the task queue (a `task`, or a `task_batch` of many) and how many of its tasks
 * are not yet safe: it is acked when the last one is, or returned to the queue if any could not
 * be made safe (the ones that were are skipped when it comes back).
 */
interface Delivery {
  msg: import("amqplib").ConsumeMessage;
  session: BrokerSession;
  open: number;
  requeue: boolean;
}

/**
 * Tasks per `task_batch` message the service sends at most; the broker's prefetch counts
 * messages, so the endpoint's `prefetch` (in tasks) becomes this many times fewer messages.
 */
const TASKS_PER_MESSAGE = 100;

/**
 * Task ids remembered per unit of `prefetch`. A finished task comes back only when its ack was
 * lost with the connection, and at most `prefetch` deliveries are unacked at a time, so a few
 * times that covers several losses in a row; more would only keep memory (~90 bytes an id).
 */
const RECENT_PER_PREFETCH = 4;
const RECENT_MIN = 10_000;

/** A running endpoint. */
export class Endpoint {
  readonly id: string;
  readonly registration: EndpointRegistration;
  readonly stats: EndpointStats = {
    tasksReceived: 0,
    resultsPublished: 0,
    resultsStored: 0,
    duplicatesSkipped: 0,
    reconnects: 0,
  };
  readonly #config: EndpointConfig;
  readonly #engine: Engine;
  readonly #journal: ResultJournal;
  readonly #dir: string;
  readonly #inFlight = new Map<string, Delivery>();
  readonly #batchers = new WeakMap<BrokerSession, ResultBatcher>();
  /** Tasks whose result is confirmed or on disk: a redelivery of one is acked, not rerun. */
  readonly #recent = new Set<string>();
  readonly #recentLimit: number;
  readonly #idle: IdleTracker;
  /** Gives back the memory that start-up and each burst of tasks grew, once they are over. */
  readonly #reclaimer = new IdleReclaimer({ baselineBytes: 0 });
  /** The audit log, when `audit_log` is set. */
  #audit: AuditLog | undefined;
  /** The account this daemon runs as (the local account of every task, unless multi-user). */
  #localUser: string | null = null;
  #state: EndpointState = "starting";
  #session: BrokerSession | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #wake: (() => void) | undefined;
  #flushing: Promise<void> | undefined;
  #flushAgain = false;
  readonly #ended = Promise.withResolvers<EndpointEnd>();

  private constructor(
    options: EndpointOptions,
    engine: Engine,
    journal: ResultJournal,
  ) {
    this.id = options.registration.endpoint_id;
    this.registration = options.registration;
    this.#config = options.config;
    this.#engine = engine;
    this.#journal = journal;
    this.#dir = options.endpointDir;
    this.#recentLimit = Math.max(RECENT_MIN, RECENT_PER_PREFETCH * options.config.prefetch);
    this.#idle = new IdleTracker(
      options.config.idle_heartbeats_soft,
      options.config.idle_heartbeats_hard,
    );
  }

  /**
   * Opens the result journal, starts the engine and connects to the broker. When the broker
   * cannot be reached it resolves anyway, in state `"disconnected"`, and keeps trying in the
   * background; with `max_consecutive_failures` set it retries here instead and rejects with
   * {@linkcode BrokerUnreachable} when every attempt failed. Rejects with
   * {@linkcode EndpointRefused} when another process consumes this endpoint's tasks.
   */
  static async start(options: EndpointOptions): Promise<Endpoint> {
    const journal = await ResultJournal.open(options.endpointDir);
    if (journal.pending > 0) {
      log.info("{n} journaled results not confirmed by the broker will be sent first", {
        n: journal.pending,
      });
    }
    let audit: AuditLog | undefined;
    if (options.config.audit_log) {
      try {
        audit = await AuditLog.open(resolvePath(options.endpointDir, options.config.audit_log));
      } catch (err) {
        await journal.close();
        throw new Error(
          `Cannot open the audit log "${options.config.audit_log}": ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    const engine = options.engine ?? await createEngine(
      options.config.engine,
      options.workerCommand ? { workerCommand: options.workerCommand } : {},
    );
    const ep = new Endpoint(options, engine, journal);
    ep.#audit = audit;
    if (audit && !options.config.multi_user) {
      const { accountNameOf } = await import("./identity_map.ts");
      ep.#localUser = await accountNameOf(Deno.uid() ?? -1);
    }
    // Their results are with the service already: a redelivery of one is acked, not run.
    for (const id of journal.recoveredConfirmed) ep.#remember(id);
    try {
      await ep.#connect();
    } catch (err) {
      if (err instanceof EndpointRefused || ep.#maxFailures() !== Infinity) {
        try {
          if (err instanceof EndpointRefused) throw err;
          ep.#state = "disconnected";
          await ep.#connectWithRetry(1, err as Error);
        } catch (final) {
          ep.#state = "stopped";
          await engine.close();
          await journal.close();
          audit?.close();
          throw final;
        }
      } else {
        ep.#state = "disconnected";
        ep.#connectWithRetry(1, err as Error).catch((e) => ep.#fail(e as Error));
      }
    }
    const period = options.config.heartbeat_period;
    ep.#heartbeat = setInterval(() => ep.#onHeartbeat(), period * 1000);
    ep.#reclaimer.touch(); // start-up's garbage goes once it has settled
    return ep;
  }

  /** Current lifecycle state. */
  get state(): EndpointState {
    return this.#state;
  }

  /** Resolves once the endpoint has ended, saying why. */
  get ended(): Promise<EndpointEnd> {
    return this.#ended.promise;
  }

  /** Failed attempts in a row after which the daemon gives up (`Infinity`: never). */
  #maxFailures(): number {
    return this.#config.max_consecutive_failures || Infinity;
  }

  /** The broker's `host:port`, without credentials, for the log and the status file. */
  #brokerAddress(): string {
    try {
      const url = new URL(this.registration.task_queue_info.connection_url);
      return `${url.hostname}:${url.port || (url.protocol === "amqps:" ? "5671" : "5672")}`;
    } catch {
      return "(unparsable address)";
    }
  }

  /**
   * Reconnects with capped, jittered exponential backoff after `failures` failed attempts in a
   * row (the last one failing with `lastError`, or a lost connection when 0). Returns once
   * connected or stopping; throws {@linkcode EndpointRefused}, or {@linkcode BrokerUnreachable}
   * once `max_consecutive_failures` attempts failed.
   */
  async #connectWithRetry(failures: number, lastError?: Error): Promise<void> {
    const max = this.#maxFailures();
    const broker = this.#brokerAddress();
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
        minMs: this.#config.reconnect_delay_min * 1000,
        maxMs: this.#config.reconnect_delay_max * 1000,
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
        `${limit} in ${wait} s; ${this.#journal.pending} results waiting on disk, ` +
        `${this.#inFlight.size} tasks running`;
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
      if (this.#state === "draining" || this.#state === "stopped") return;
      try {
        await this.#connect();
        return;
      } catch (err) {
        if (err instanceof EndpointRefused) throw err;
        lastError = err as Error;
        failures++;
      }
    }
  }

  #writeStatus(
    s: Omit<DaemonStatus, "broker" | "resultsWaiting" | "tasksRunning">,
  ): void {
    void writeStatusFile(this.#dir, {
      ...s,
      broker: this.#brokerAddress(),
      resultsWaiting: this.#journal.pending,
      tasksRunning: this.#inFlight.size,
    }).catch((err) => log.debug("Cannot write the status file: {err}", { err: String(err) }));
  }

  async #connect(): Promise<void> {
    const session = await openSession(this.registration, {
      prefetch: Math.max(2, Math.ceil(this.#config.prefetch / TASKS_PER_MESSAGE)),
      onLost: (s, err) => this.#onSessionLost(s, err),
      onMessage: (s, msg) => this.#onMessage(s, msg),
      beforeConsume: (s) => this.#flushJournal(s),
    });
    if (this.#state === "draining" || this.#state === "stopped") {
      await session.close();
      return;
    }
    this.#session = session;
    this.#state = "running";
    log.info("Connected to the broker at {broker}; consuming {queue}", {
      broker: this.#brokerAddress(),
      queue: this.registration.task_queue_info.queue,
    });
    this.#writeStatus({
      state: "connected",
      since: new Date().toISOString(),
      attempt: 0,
      nextRetryAt: null,
      lastError: null,
    });
    void this.#sendStatus(this.#config.heartbeat_period);
  }

  /**
   * Sends the journaled results the broker has not confirmed (pipelined, in order) and marks
   * each confirmed. Runs before any new task is taken on a new session.
   */
  async #flushJournal(session: BrokerSession): Promise<void> {
    if (this.#journal.pending === 0) return;
    let sent = 0;
    let sends: Promise<void>[] = [];
    for await (const { taskId, packed } of this.#journal.unconfirmed()) {
      sends.push(
        session.publish(packed).then(() => {
          this.#journal.confirm(taskId);
          this.#remember(taskId);
          this.stats.resultsPublished++;
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

  /** Flushes the journal on the live session (once at a time; again if asked meanwhile). */
  #flushSoon(): void {
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
          this.#flushSoon();
        }
      });
  }

  #onSessionLost(session: BrokerSession, err: Error): void {
    if (session !== this.#session) return;
    this.#session = undefined;
    if (this.#state !== "running") return;
    this.#state = "disconnected";
    this.stats.reconnects++;
    log.warn("Lost the broker connection ({err}); tasks keep running, results wait on disk", {
      err: err.message,
    });
    void session.close();
    this.#connectWithRetry(0).catch((e) => this.#fail(e as Error));
  }

  #onMessage(session: BrokerSession, msg: import("amqplib").ConsumeMessage): void {
    this.#reclaimer.touch();
    let decoded: Message;
    try {
      decoded = unpackMessage(
        new Uint8Array(msg.content.buffer, msg.content.byteOffset, msg.content.byteLength),
      );
    } catch (err) {
      // Unreadable: it can never run; reject it (no requeue) so it does not loop forever.
      log.error("Rejecting an unreadable task message: {err}", { err: String(err) });
      session.reject(msg);
      return;
    }
    if (decoded.message_type === "command") {
      session.ack(msg);
      this.#onCommand(decoded.data);
      return;
    }
    if (decoded.message_type === "task_cancel") {
      session.ack(msg);
      const id = decoded.data.task_id;
      // The task came before its cancel on this queue, so it is queued, running or done here.
      const cancelled = this.#engine.cancel(id);
      log.info("Cancel of task {id}: {what}", {
        id,
        what: cancelled ? "cancelled" : "not running here (already done)",
      });
      return;
    }
    if (decoded.message_type !== "task" && decoded.message_type !== "task_batch") {
      log.warn("Ignoring a {type} message on the task queue", { type: decoded.message_type });
      session.ack(msg);
      return;
    }
    const tasks = decoded.message_type === "task" ? [decoded.data] : decoded.data.tasks;
    const delivery: Delivery = { msg, session, open: tasks.length, requeue: false };
    if (tasks.length === 0) session.ack(msg);
    for (const task of tasks) this.#take(delivery, task);
  }

  /** Runs one task of `delivery`, unless it runs or ran here already. */
  #take(delivery: Delivery, task: TaskMessage): void {
    const { task_id: taskId, task_buffer: buffer, container } = task;
    const running = this.#inFlight.get(taskId);
    if (running) {
      // A redelivery (after a reconnect) of a task we are running: the run settles the newest
      // copy, and the old copy counts it as done.
      this.stats.duplicatesSkipped++;
      if (running !== delivery) {
        this.#inFlight.set(taskId, delivery);
        this.#settle(running, true);
      }
      return;
    }
    if (this.#recent.has(taskId) || this.#journal.has(taskId)) {
      this.stats.duplicatesSkipped++;
      log.info("Task {id} was delivered again but already ran here; acked, not run again", {
        id: taskId,
      });
      this.#settle(delivery, true);
      return;
    }
    this.#inFlight.set(taskId, delivery);
    this.stats.tasksReceived++;
    const received = nowNs();
    const audit = this.#audit ? this.#auditOf(task, received) : undefined;
    if (audit && !this.#config.multi_user) audit.received(this.#localUser);
    const refusal = container && !this.#config.multi_user
      ? containerRefusal(this.#config.engine, container)
      : undefined;
    const run = refusal
      ? Promise.resolve(
        failureResult(taskId, "ContainerUnavailable", refusal, [], ActorName.ENDPOINT),
      )
      : this.#engine.submit(
        taskId,
        buffer,
        container?.location,
        audit ? { task, onAccount: (a) => audit.received(a) } : { task },
      );
    run.then(
      (result) => {
        result.task_statuses = [
          { timestamp: received, state: TaskState.RECEIVED, actor: ActorName.ENDPOINT },
          ...(result.task_statuses ?? []),
        ];
        // A task lost to this endpoint's own shutdown runs again later: not finished yet.
        const requeued = this.#state === "draining" &&
          result.error_details?.code === "WorkerLost";
        if (audit && !requeued) audit.finished(result);
        return this.#deliver(taskId, result);
      },
      (err) => {
        if (!(err instanceof PoolClosed)) {
          log.error("Task {id} could not be run; returning it to the broker: {err}", {
            id: taskId,
            err: String(err),
          });
        }
        this.#release(taskId, false);
      },
    );
  }

  /** Audit lines of one task: `received` once (with its account), then `running`, `finished`. */
  #auditOf(task: TaskMessage, receivedNs: bigint) {
    const log = this.#audit!;
    const base = {
      endpoint_id: this.id,
      task_id: task.task_id,
      function_id: task.function_id ?? null,
      user: task.user ?? null,
    };
    let account: string | null = null;
    let said = false;
    const received = (a: string | null) => {
      if (said) return;
      said = true;
      account = a;
      log.write({ time: isoOf(receivedNs), event: "received", ...base, local_user: a });
    };
    const finished = (result: ResultMessage) => {
      received(null);
      // One line per start on a worker: a task run again after a lost worker has two.
      for (const t of result.task_statuses ?? []) {
        if (t.state !== TaskState.RUNNING) continue;
        log.write({ time: isoOf(t.timestamp), event: "running", ...base, local_user: account });
      }
      log.write({
        time: new Date().toISOString(),
        event: "finished",
        ...base,
        local_user: account,
        outcome: result.error_details ? `failed: ${result.error_details.code}` : "success",
        ...(result.attempts ? { attempts: result.attempts } : {}),
      });
    };
    return { received, finished };
  }

  #onCommand(cmd: CommandMessage): void {
    if (cmd.command === "shutdown") {
      const reason = typeof cmd.args["reason"] === "string"
        ? cmd.args["reason"]
        : "no reason given";
      log.warn("The service asked this endpoint to shut down: {reason}", { reason });
      void this.stop(`shut down by the service (${reason})`);
      return;
    }
    log.warn("Ignoring unknown command {command}", { command: cmd.command });
  }

  /**
   * Journals a result and publishes it at the same time; acks the task as soon as either makes
   * the result safe (synced or confirmed), and requeues it only when neither did.
   */
  async #deliver(taskId: string, result: ResultMessage): Promise<void> {
    this.#reclaimer.touch();
    if (this.#state === "draining" && result.error_details?.code === "WorkerLost") {
      // Lost to our own shutdown, not to the task: let the broker give it to the next run.
      this.#release(taskId, false);
      return;
    }
    let released = false;
    const safe = () => {
      if (released) return;
      released = true;
      this.#release(taskId, true);
    };
    let durable: Promise<boolean>;
    let encoded: Uint8Array | undefined;
    try {
      // Encoded once: the journal keeps it as a message of one, the batch carries the same bytes.
      encoded = encodeResult(result);
      durable = this.#journal.append(taskId, packResultBatch([encoded]))
        .then(() => (safe(), true), (err) => {
          log.error("Cannot journal the result of {id}: {err}", { id: taskId, err: String(err) });
          return false;
        });
    } catch (err) {
      log.error("Cannot pack the result of {id}: {err}", { id: taskId, err: String(err) });
      durable = Promise.resolve(false);
    }
    const session = this.#session;
    const confirmed = session && encoded
      ? this.#batcherFor(session).add(encoded).then(() => {
        this.#journal.confirm(taskId);
        this.stats.resultsPublished++;
        safe();
        return true;
      }, (err) => {
        log.warn("Result of {id} not confirmed; it waits in the journal: {err}", {
          id: taskId,
          err: String(err),
        });
        session.lost(err as Error);
        return false;
      })
      : Promise.resolve(false);
    const [isDurable, isConfirmed] = await Promise.all([durable, confirmed]);
    if (isConfirmed) return;
    if (!isDurable) {
      log.error("The result of {id} is neither confirmed nor on disk; the task will run again", {
        id: taskId,
      });
      this.#release(taskId, false);
      return;
    }
    this.stats.resultsStored++;
    // Reconnected while we wrote it: send it now rather than at the next reconnect.
    if (this.#session && this.#session !== session) this.#flushSoon();
  }

  #batcherFor(session: BrokerSession): ResultBatcher {
    let b = this.#batchers.get(session);
    if (!b) {
      b = new ResultBatcher((body) => session.publish(body));
      this.#batchers.set(session, b);
    }
    return b;
  }

  /** Ends a task's stay: ack its delivery when its result is safe, else return it to the queue. */
  #release(taskId: string, safe: boolean): void {
    const delivery = this.#inFlight.get(taskId);
    this.#inFlight.delete(taskId);
    if (safe) this.#remember(taskId);
    if (delivery) this.#settle(delivery, safe);
  }

  /** Counts one task of `delivery` as settled; the last one acks or returns the message. */
  #settle(delivery: Delivery, safe: boolean): void {
    if (!safe) delivery.requeue = true;
    if (--delivery.open > 0) return;
    // A delivery on a closed channel needs nothing: the broker requeued it already.
    if (delivery.session !== this.#session) return;
    if (delivery.requeue) delivery.session.nack(delivery.msg);
    else delivery.session.ack(delivery.msg);
  }

  #remember(taskId: string): void {
    this.#recent.add(taskId);
    if (this.#recent.size > this.#recentLimit) {
      const oldest = this.#recent.values().next().value;
      if (oldest !== undefined) this.#recent.delete(oldest);
    }
  }

  #onHeartbeat(): void {
    if (this.#state !== "running" && this.#state !== "disconnected") return;
    void this.#sendStatus(this.#config.heartbeat_period);
    const verdict = this.#idle.beat(
      this.stats.tasksReceived,
      this.stats.resultsPublished + this.stats.resultsStored,
      this.#inFlight.size,
    );
    log.debug("Heartbeat: {tasks} tasks, {results} results since start", {
      tasks: this.stats.tasksReceived,
      results: this.stats.resultsPublished,
    });
    if (verdict) {
      log.warn("Shutting down: {why}", { why: verdict });
      void this.stop(verdict);
    }
  }

  async #sendStatus(period: number): Promise<void> {
    const session = this.#session;
    if (!session) return;
    const body = packMessage({
      message_type: "ep_status_report",
      data: {
        endpoint_id: this.id,
        global_state: {
          heartbeat_period: period,
          ...this.#engine.status(),
          outstanding_tasks: this.#inFlight.size,
          stored_results: this.#journal.pending,
        },
        task_statuses: {},
      },
    });
    await session.publish(body).catch((err) =>
      log.warn("Cannot send a status report: {err}", { err: String(err) })
    );
  }

  #fail(error: Error): void {
    log.error("Endpoint {id} is giving up: {err}", { id: this.id, err: error.message });
    void this.#shutdown({ kind: "failed", error });
  }

  /**
   * Stops taking tasks, lets running ones finish (queued ones go back to the broker), says
   * goodbye with a final status report and closes; idempotent.
   */
  async stop(reason = "stopped"): Promise<void> {
    await this.#shutdown({ kind: "stopped", reason });
  }

  async #shutdown(end: EndpointEnd): Promise<void> {
    if (this.#state === "draining" || this.#state === "stopped") return await this.#stopped();
    this.#state = "draining";
    clearInterval(this.#heartbeat);
    this.#reclaimer.close();
    this.#wake?.();
    await this.#session?.cancelConsumer();
    await this.#engine.close();
    // Give result publishes and acks that are in flight a moment to settle.
    for (let i = 0; i < 50 && this.#inFlight.size > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.#sendStatus(0);
    await this.#flushing;
    await this.#session?.close();
    this.#session = undefined;
    await this.#journal.close().catch((err) =>
      log.error("Cannot close the result journal: {err}", { err: String(err) })
    );
    await removeStatusFile(this.#dir);
    this.#audit?.close();
    this.#state = "stopped";
    log.info("Endpoint {id} stopped: {why}", {
      id: this.id,
      why: end.kind === "stopped" ? end.reason : end.error.message,
    });
    this.#ended.resolve(end);
  }

  async #stopped(): Promise<void> {
    await this.#ended.promise;
  }
}

/** An ISO 8601 time from nanoseconds since the epoch. */
function isoOf(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

/**
 * Why this endpoint cannot run a task in `container`, or `undefined` when it can: it needs a
 * container runtime, and one that starts images of the container's type (`custom` takes any;
 * apptainer and singularity read each other's images).
 */
export function containerRefusal(
  engine: ContainerConfig,
  container: TaskContainer,
): string | undefined {
  const what = `container ${container.container_id} (${container.container_type} image ` +
    `"${container.location}")`;
  const runtime = engine.container_type;
  if (runtime === null) {
    return `The task must run in ${what}, but this endpoint runs no containers: set ` +
      "engine.container_type in its config.yaml";
  }
  const family = (t: string) => t === "singularity" ? "apptainer" : t;
  if (runtime !== "custom" && family(runtime) !== family(container.container_type)) {
    return `The task must run in ${what}, but this endpoint's container runtime is ${runtime}`;
  }
  return undefined;
}
