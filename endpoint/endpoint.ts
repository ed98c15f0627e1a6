/**
 * The endpoint daemon's core, after registration: it consumes its task queue (exclusive
 * consumer), runs each task in the engine and publishes the result to `results` with publisher
 * confirms. A task message is acked only once its result is safe: confirmed by the broker, or
 * written to the {@linkcode ResultStore} on disk. When the broker connection goes away the engine
 * keeps running ("clutch disengages, engine continues"); results wait on disk and are sent first
 * after the reconnect, which is retried with a jittered delay until `max_consecutive_failures`.
 * Status reports go out every heartbeat period, and a final one with `heartbeat_period: 0`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { EndpointRegistration } from "../sdk/client.ts";
import {
  ActorName,
  type CommandMessage,
  type Message,
  nowNs,
  packMessage,
  type ResultMessage,
  type TaskContainer,
  TaskState,
  unpackMessage,
} from "../sdk/protocol/mod.ts";
import { createEngine, type Engine, PoolClosed } from "./engine/mod.ts";
import { IdleReclaimer } from "./engine/idle_reclaimer.ts";
import { failureResult } from "./engine/failure.ts";
import type { ContainerConfig } from "./engine/container.ts";
import type { EndpointConfig } from "./config.ts";
import { ResultBatcher } from "./result_batcher.ts";
import { ResultStore } from "./result_store.ts";
import { type BrokerSession, EndpointRefused, openSession } from "./broker_session.ts";
import { IdleTracker } from "./idle_tracker.ts";

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
  /** The endpoint's directory (for `unacked_results/`). */
  endpointDir: string;
  /** Worker command line (tests and compiled binaries). @default the engine's own */
  workerCommand?: readonly string[];
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

interface InFlight {
  msg: import("amqplib").ConsumeMessage;
  session: BrokerSession;
}

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
  readonly #store: ResultStore;
  readonly #stored: Set<string>;
  readonly #inFlight = new Map<string, InFlight>();
  readonly #batchers = new WeakMap<BrokerSession, ResultBatcher>();
  /** Tasks whose result is confirmed or on disk: a redelivery of one is acked, not rerun. */
  readonly #recent = new Set<string>();
  readonly #recentLimit: number;
  readonly #idle: IdleTracker;
  /** Gives back the memory that start-up and each burst of tasks grew, once they are over. */
  readonly #reclaimer = new IdleReclaimer({ baselineBytes: 0 });
  #state: EndpointState = "starting";
  #session: BrokerSession | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #wake: (() => void) | undefined;
  readonly #ended = Promise.withResolvers<EndpointEnd>();

  private constructor(
    options: EndpointOptions,
    engine: Engine,
    store: ResultStore,
    stored: string[],
  ) {
    this.id = options.registration.endpoint_id;
    this.registration = options.registration;
    this.#config = options.config;
    this.#engine = engine;
    this.#store = store;
    this.#stored = new Set(stored);
    this.#recentLimit = Math.max(RECENT_MIN, RECENT_PER_PREFETCH * options.config.prefetch);
    this.#idle = new IdleTracker(
      options.config.idle_heartbeats_soft,
      options.config.idle_heartbeats_hard,
    );
  }

  /**
   * Opens the result store, starts the engine and connects to the broker (retrying like a
   * reconnect). Rejects with {@linkcode EndpointRefused} when another process consumes this
   * endpoint's tasks, or {@linkcode BrokerUnreachable} when every attempt failed.
   */
  static async start(options: EndpointOptions): Promise<Endpoint> {
    const store = await ResultStore.open(options.endpointDir);
    const stored = await store.keys();
    if (stored.length > 0) log.info("{n} stored results will be sent first", { n: stored.length });
    const engine = await createEngine(
      options.config.engine,
      options.workerCommand ? { workerCommand: options.workerCommand } : {},
    );
    const ep = new Endpoint(options, engine, store, stored);
    try {
      await ep.#connectWithRetry(true);
    } catch (err) {
      ep.#state = "stopped";
      await engine.close();
      throw err;
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

  async #connectWithRetry(immediate: boolean): Promise<void> {
    const { max_consecutive_failures: max, reconnect_delay_min: lo, reconnect_delay_max: hi } =
      this.#config;
    let lastError: Error | undefined;
    for (let failures = 0; failures < max; failures++) {
      if (!immediate || failures > 0) {
        const delayS = lo + Math.random() * (hi - lo);
        log.info("Reconnecting to the broker in {s} s", { s: delayS.toFixed(1) });
        await new Promise<void>((r) => {
          const t = setTimeout(r, delayS * 1000);
          this.#wake = () => {
            clearTimeout(t);
            r();
          };
        });
        this.#wake = undefined;
      }
      if (this.#state === "draining" || this.#state === "stopped") return;
      try {
        await this.#connect();
        return;
      } catch (err) {
        if (err instanceof EndpointRefused) throw err;
        lastError = err as Error;
        log.warn("Cannot connect to the broker (attempt {n} of {max}): {err}", {
          n: failures + 1,
          max,
          err: lastError.message,
        });
      }
    }
    throw new BrokerUnreachable(
      `Cannot reach the broker after ${max} consecutive attempts: ${lastError?.message}`,
      { cause: lastError },
    );
  }

  async #connect(): Promise<void> {
    const session = await openSession(this.registration, {
      prefetch: this.#config.prefetch,
      onLost: (s, err) => this.#onSessionLost(s, err),
      onMessage: (s, msg) => this.#onMessage(s, msg),
      beforeConsume: (s) => this.#flushStore(s),
    });
    if (this.#state === "draining" || this.#state === "stopped") {
      await session.close();
      return;
    }
    this.#session = session;
    this.#state = "running";
    log.info("Connected to the broker; consuming {queue}", {
      queue: this.registration.task_queue_info.queue,
    });
    void this.#sendStatus(this.#config.heartbeat_period);
  }

  /** Sends stored results before any new task is taken; deletes each once confirmed. */
  async #flushStore(session: BrokerSession): Promise<void> {
    for (const taskId of await this.#store.keys()) {
      const packed = await this.#store.get(taskId);
      if (packed) await session.publish(packed);
      await this.#store.discard(taskId);
      this.#stored.delete(taskId);
      this.#remember(taskId);
      this.stats.resultsPublished++;
      log.debug("Sent stored result of {id}", { id: taskId });
    }
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
    this.#connectWithRetry(false).catch((e) => this.#fail(e as Error));
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
    if (decoded.message_type !== "task") {
      log.warn("Ignoring a {type} message on the task queue", { type: decoded.message_type });
      session.ack(msg);
      return;
    }
    const { task_id: taskId, task_buffer: buffer, container } = decoded.data;
    const running = this.#inFlight.get(taskId);
    if (running) {
      // A redelivery (after a reconnect) of a task we are running: the run acks the newest copy.
      this.stats.duplicatesSkipped++;
      if (
        running.session !== session || running.msg.fields.deliveryTag !== msg.fields.deliveryTag
      ) {
        if (running.session === session) session.ack(running.msg);
        this.#inFlight.set(taskId, { msg, session });
      }
      return;
    }
    if (this.#recent.has(taskId) || this.#stored.has(taskId)) {
      this.stats.duplicatesSkipped++;
      session.ack(msg);
      return;
    }
    this.#inFlight.set(taskId, { msg, session });
    this.stats.tasksReceived++;
    const received = nowNs();
    const refusal = container ? containerRefusal(this.#config.engine, container) : undefined;
    const run = refusal
      ? Promise.resolve(
        failureResult(taskId, "ContainerUnavailable", refusal, [], ActorName.ENDPOINT),
      )
      : this.#engine.submit(taskId, buffer, container?.location);
    run.then(
      (result) => {
        result.task_statuses = [
          { timestamp: received, state: TaskState.RECEIVED, actor: ActorName.ENDPOINT },
          ...(result.task_statuses ?? []),
        ];
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

  /** Publishes a result, or stores it on disk; then acks (safe) or requeues (not safe) the task. */
  async #deliver(taskId: string, result: ResultMessage): Promise<void> {
    this.#reclaimer.touch();
    if (this.#state === "draining" && result.error_details?.code === "WorkerLost") {
      // Lost to our own shutdown, not to the task: let the broker give it to the next run.
      this.#release(taskId, false);
      return;
    }
    const session = this.#session;
    if (session) {
      try {
        await this.#batcherFor(session).add(result);
        this.stats.resultsPublished++;
        this.#release(taskId, true);
        return;
      } catch (err) {
        log.warn("Result of {id} not confirmed; keeping it on disk: {err}", {
          id: taskId,
          err: String(err),
        });
        session.lost(err as Error);
      }
    }
    try {
      await this.#store.put(taskId, packMessage({ message_type: "result", data: result }));
      this.#stored.add(taskId);
      this.stats.resultsStored++;
      this.#release(taskId, true);
      // Reconnected while we wrote it: send it now rather than at the next reconnect.
      const live = this.#session;
      if (live) void this.#flushStore(live).catch((err) => live.lost(err as Error));
    } catch (err) {
      log.error("Cannot store the result of {id}; the task will run again: {err}", {
        id: taskId,
        err: String(err),
      });
      this.#release(taskId, false);
    }
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
    const entry = this.#inFlight.get(taskId);
    this.#inFlight.delete(taskId);
    if (safe) this.#remember(taskId);
    // A delivery on a closed channel needs nothing: the broker requeued it already.
    if (!entry || entry.session !== this.#session) return;
    if (safe) entry.session.ack(entry.msg);
    else entry.session.nack(entry.msg);
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
          stored_results: this.#stored.size,
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
    await this.#session?.close();
    this.#session = undefined;
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
