/**
 * The endpoint daemon's core, after registration: it consumes its task queue (exclusive
 * consumer), runs each task in the engine and publishes the result to `results` with publisher
 * confirms, and at the same time appends it to the {@linkcode ResultJournal} on disk. A task
 * message is acked only once its result is safe: confirmed by the broker, or synced to the
 * journal, whichever comes first; a redelivered task whose result is journaled is acked, not run.
 * When the broker connection goes away the engine keeps running ("clutch disengages, engine
 * continues"); results wait in the journal and are sent first after the reconnect, which is
 * retried with capped, jittered exponential backoff for as long as the outage lasts (or until
 * `max_consecutive_failures`, when that is set): see {@linkcode BrokerLink}. Which messages are
 * unacked and when each is acked is the {@linkcode DeliveryLedger}'s.
 * Status reports go out every heartbeat period, within 100 ms of a change of the engine's worker
 * count (workers still starting, blocks scaled out or in; the engine tells), and a final one with
 * `heartbeat_period: 0`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type amqp from "amqplib";
import type { EndpointRegistration } from "../sdk/client.ts";
import {
  ActorName,
  type CommandMessage,
  type Message,
  nowNs,
  packMessage,
  type ResultMessage,
  type TaskMessage,
  TaskState,
  unpackMessage,
} from "../sdk/protocol/mod.ts";
import { createEngine, type Engine, type EngineStatus, PoolClosed } from "./engine/mod.ts";
import { IdleReclaimer } from "./engine/idle_reclaimer.ts";
import { failureResult } from "./engine/failure.ts";
import { containerRefusal } from "./engine/container.ts";
import type { EndpointConfig } from "./config.ts";
import { ResultJournal } from "./result_journal.ts";
import { removeStatusFile } from "./status_file.ts";
import { type BrokerSession, EndpointRefused } from "./broker_session.ts";
import { BrokerLink } from "./broker_link.ts";
import { type Delivery, DeliveryLedger } from "./delivery_ledger.ts";
import { IdleTracker } from "./idle_tracker.ts";
import { AuditLog, taskAudit } from "./audit_log.ts";
import { type EndpointStats, observeEndpointResult } from "./metrics.ts";

export type { EndpointStats };
import { resolve as resolvePath } from "node:path";
import { TRACING } from "../sdk/_tracing.ts";
import { traceEndpointHops } from "./task_trace.ts";

export { EndpointRefused } from "./broker_session.ts";
export { BrokerUnreachable } from "./broker_link.ts";

const log = getLogger(["funcx", "endpoint"]);

/**
 * At most this long after the engine's worker count changes, a status report says so (workers
 * coming up together share one report).
 */
export const WORKERS_REPORT_MS = 100;

export { ENDPOINT_VERSION } from "./version.ts";

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
  readonly #link: BrokerLink;
  readonly #ledger: DeliveryLedger;
  readonly #idle: IdleTracker;
  /** Gives back the memory that start-up and each burst of tasks grew, once they are over. */
  readonly #reclaimer = new IdleReclaimer({ baselineBytes: 0 });
  /** The audit log, when `audit_log` is set. */
  #audit: AuditLog | undefined;
  /** The account this daemon runs as (the local account of every task, unless multi-user). */
  #localUser: string | null = null;
  #state: EndpointState = "starting";
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  /** A status report due soon because the engine's worker count changed. */
  #workersReport: ReturnType<typeof setTimeout> | undefined;
  /** The worker count of the last status report sent. */
  #reportedWorkers = -1;
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
    this.#link = new BrokerLink({
      registration: options.registration,
      config: options.config,
      endpointDir: options.endpointDir,
      journal,
      onMessage: (s, msg) => this.#onMessage(s, msg),
      onConnected: () => {
        this.#state = "running";
        void this.#sendStatus(this.#config.heartbeat_period);
      },
      onLost: () => {
        this.#state = "disconnected";
        this.stats.reconnects++;
      },
      onGiveUp: (e) => this.#fail(e),
      onJournalSent: (taskId) => {
        this.#ledger.remember(taskId);
        this.stats.resultsPublished++;
      },
      tasksRunning: () => this.#ledger.size,
    });
    this.#ledger = new DeliveryLedger({
      prefetch: options.config.prefetch,
      journal,
      link: this.#link,
      counts: this.stats,
    });
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
    // The engine tells of worker changes before the endpoint exists (its first blocks start).
    let onWorkersChanged = () => {};
    const engine = options.engine ?? await createEngine(options.config.engine, {
      ...(options.workerCommand ? { workerCommand: options.workerCommand } : {}),
      onWorkersChanged: () => onWorkersChanged(),
    });
    const ep = new Endpoint(options, engine, journal);
    onWorkersChanged = () => ep.#workersChanged();
    ep.#audit = audit;
    if (audit && !options.config.multi_user) {
      const { accountNameOf } = await import("./identity_map.ts");
      ep.#localUser = await accountNameOf(Deno.uid() ?? -1);
    }
    // Their results are with the service already: a redelivery of one is acked, not run.
    for (const id of journal.recoveredConfirmed) ep.#ledger.remember(id);
    try {
      await ep.#link.connect();
    } catch (err) {
      if (err instanceof EndpointRefused || ep.#link.maxFailures !== Infinity) {
        try {
          if (err instanceof EndpointRefused) throw err;
          ep.#state = "disconnected";
          await ep.#link.connectWithRetry(1, err as Error);
        } catch (final) {
          ep.#state = "stopped";
          await engine.close();
          await journal.close();
          audit?.close();
          throw final;
        }
      } else {
        ep.#state = "disconnected";
        ep.#link.connectWithRetry(1, err as Error).catch((e) => ep.#fail(e as Error));
      }
    }
    const period = options.config.heartbeat_period;
    ep.#heartbeat = setInterval(() => ep.#onHeartbeat(), period * 1000);
    ep.#reclaimer.touch(); // start-up's garbage goes once it has settled
    return ep;
  }

  /**
   * Reports the engine's new worker count soon: within {@linkcode WORKERS_REPORT_MS}, in one
   * report for all the workers that come up meanwhile (hundreds start within seconds).
   */
  #workersChanged(): void {
    if (this.#workersReport !== undefined) return;
    this.#workersReport = setTimeout(() => {
      this.#workersReport = undefined;
      if (this.#state !== "running") return;
      if (this.#engine.status().total_workers === this.#reportedWorkers) return;
      void this.#sendStatus(this.#config.heartbeat_period);
    }, WORKERS_REPORT_MS);
  }

  /** Current lifecycle state. */
  get state(): EndpointState {
    return this.#state;
  }

  /** The engine's counts, the unacked tasks and the journaled results, as status reports say. */
  globalState(): EngineStatus & { outstanding_tasks: number; stored_results: number } {
    return {
      ...this.#engine.status(),
      outstanding_tasks: this.#ledger.size,
      stored_results: this.#journal.pending,
    };
  }

  /** Resolves once the endpoint has ended, saying why. */
  get ended(): Promise<EndpointEnd> {
    return this.#ended.promise;
  }

  #onMessage(session: BrokerSession, msg: amqp.ConsumeMessage): void {
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
    const running = this.#ledger.running(taskId);
    if (running) {
      // A redelivery (after a reconnect) of a task we are running: the run settles the newest
      // copy, and the old copy counts it as done.
      this.stats.duplicatesSkipped++;
      if (running !== delivery) {
        this.#ledger.track(taskId, delivery);
        this.#ledger.settle(running, true);
      }
      return;
    }
    if (this.#ledger.ranHere(taskId)) {
      this.stats.duplicatesSkipped++;
      log.info("Task {id} was delivered again but already ran here; acked, not run again", {
        id: taskId,
      });
      this.#ledger.settle(delivery, true);
      return;
    }
    this.#ledger.track(taskId, delivery);
    this.stats.tasksReceived++;
    const received = nowNs();
    const audit = this.#audit ? taskAudit(this.#audit, this.id, task, received) : undefined;
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
        {
          task,
          resourceSpecification: task.resource_specification ?? undefined,
          ...(audit ? { onAccount: (a: string | null) => audit.received(a) } : {}),
        },
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
        if (!requeued) observeEndpointResult(result);
        const trace = TRACING && task.traceparent
          ? traceEndpointHops(task, received, result)
          : undefined;
        const delivered = this.#deliver(taskId, result, task.result_route);
        return trace ? delivered.finally(() => trace.end()) : delivered;
      },
      (err) => {
        if (!(err instanceof PoolClosed)) {
          log.error("Task {id} could not be run; returning it to the broker: {err}", {
            id: taskId,
            err: String(err),
          });
        }
        this.#ledger.release(taskId, false);
      },
    );
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

  /** Makes a task's result safe, unless the task was lost to this endpoint's shutdown. */
  async #deliver(taskId: string, result: ResultMessage, route?: string): Promise<void> {
    this.#reclaimer.touch();
    if (this.#state === "draining" && result.error_details?.code === "WorkerLost") {
      // Lost to our own shutdown, not to the task: let the broker give it to the next run.
      this.#ledger.release(taskId, false);
      return;
    }
    await this.#ledger.deliver(taskId, result, route);
  }

  #onHeartbeat(): void {
    if (this.#state !== "running" && this.#state !== "disconnected") return;
    void this.#sendStatus(this.#config.heartbeat_period);
    const verdict = this.#idle.beat(
      this.stats.tasksReceived,
      this.stats.resultsPublished + this.stats.resultsStored,
      this.#ledger.size,
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
    const session = this.#link.session;
    if (!session) return;
    const engine = this.#engine.status();
    this.#reportedWorkers = engine.total_workers;
    const body = packMessage({
      message_type: "ep_status_report",
      data: {
        endpoint_id: this.id,
        global_state: {
          heartbeat_period: period,
          ...engine,
          outstanding_tasks: this.#ledger.size,
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
    clearTimeout(this.#workersReport);
    this.#reclaimer.close();
    this.#link.stopReconnecting();
    await this.#link.session?.cancelConsumer();
    await this.#engine.close();
    // Give result publishes and acks that are in flight a moment to settle.
    for (let i = 0; i < 50 && this.#ledger.size > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.#sendStatus(0);
    await this.#link.flushing;
    await this.#link.close();
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
