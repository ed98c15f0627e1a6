/**
 * `FuncXExecutor`: submit functions to one endpoint and get futures back. Submissions are drained
 * into batches of up to `batchSize` per `POST /v2/submit` as fast as they come; results arrive on
 * this process's AMQP stream of the task group, and results that arrive before their future knows
 * its task id are kept until it does. When nothing is outstanding the stream is closed, so a
 * script exits when its work is done.
 *
 * A future settles only with its task's outcome (a result, a remote error, `WorkerLost`,
 * `ManagerLost`, a cancellation) or a deadline the user set (`resultTimeoutMs`, `signal`). A
 * service that cannot be reached is waited for: a submit is sent again with the same
 * idempotency key until the service answers, and while the stream is down the outcomes of open
 * tasks are read from the service.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type BatchResult, FuncXClient, isTransientError, resultValue } from "./client.ts";
import { FuncxAPIError, remoteErrorOf, ResultTimeoutError, taskFailure } from "./errors.ts";
import { backoffDelay, sleep } from "./_backoff.ts";
import { FuncXFuture } from "./future.ts";
import { packArgs, type ResultMessage } from "./protocol/mod.ts";
import { type ResultSubscriber, SharedResultStream } from "./_result_hub.ts";

const log = getLogger(["funcx", "sdk", "executor"]);

/** Submit requests an executor has on the way at once. */
const SUBMITS_IN_FLIGHT = 3;

/** How long an idle executor keeps its result stream open for the next task. */
const IDLE_LINGER_MS = 200;

/**
 * Options of {@linkcode FuncXExecutor}.
 *
 * @example Options checked when the executor is built
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXClient, FuncXExecutor, type FuncXExecutorOptions } from "@funcx/sdk";
 * const options: FuncXExecutorOptions = {
 *   endpointId: crypto.randomUUID(),
 *   client: new FuncXClient({ serviceAddress: "http://127.0.0.1:9", accessToken: "t" }),
 *   batchSize: 256,
 *   resultTimeoutMs: 60_000,
 * };
 * assert.equal(new FuncXExecutor(options).endpointId, options.endpointId);
 * ```
 */
export interface FuncXExecutorOptions {
  /** Endpoint the tasks run on. */
  endpointId: string;
  /** Client to use. @default a new `FuncXClient()` from the environment */
  client?: FuncXClient;
  /**
   * Task group to submit into (give an existing one to reattach to it with `reloadTasks`; it can
   * also be assigned later, see {@linkcode FuncXExecutor.taskGroupId}). @default a new one
   */
  taskGroupId?: string;
  /** Most tasks per submit request. @default 128 */
  batchSize?: number;
  /** A name for logs. @default "FuncXExecutor" */
  label?: string;
  /**
   * Container (from {@linkcode FuncXClient.registerContainer}) that functions run in; functions
   * are registered with it. @default none: the endpoint's plain workers
   */
  containerId?: string;
  /**
   * A deadline for each future, in ms from its `submit`: a future without an outcome by then
   * rejects with {@linkcode ResultTimeoutError} (the task may still run). @default none: a future
   * waits for its task's outcome however long the service or the broker is away
   */
  resultTimeoutMs?: number;
  /**
   * Values for the user endpoint template of a multi-user endpoint (partition, walltime,
   * workers, account, ...), checked there against the administrator's schema; each different
   * set of values gets a user endpoint of its own. @default none: the template's defaults
   */
  userEndpointConfig?: Record<string, unknown>;
  /**
   * Aborting it rejects every unsettled future with the signal's reason and stops the executor
   * (tasks already sent keep running; `reloadTasks` finds them). @default none
   */
  signal?: AbortSignal;
}

/**
 * Options of {@linkcode FuncXExecutor.shutdown}.
 *
 * @example Stop without waiting, dropping what was not sent
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ShutdownOptions } from "@funcx/sdk";
 * const options: ShutdownOptions = { wait: false, cancelFutures: true };
 * assert.equal(options.cancelFutures, true);
 * ```
 */
export interface ShutdownOptions {
  /** Wait for outstanding futures to settle. @default true */
  wait?: boolean;
  /** Cancel futures that were not sent yet. @default false */
  cancelFutures?: boolean;
}

interface Pending {
  future: FuncXFuture<unknown>;
  functionId: Promise<string>;
  payload: string;
  /** The task group it goes into: the executor's at the time of `submit`. */
  taskGroupId: string;
}

/**
 * Any function the executor can send.
 *
 * @example Functions the executor accepts
 * ```ts
 * import assert from "node:assert/strict";
 * import type { AnyFn } from "@funcx/sdk";
 * const fns: AnyFn[] = [(a: number, b: number) => a + b, async (s: string) => s.length];
 * assert.equal(fns.length, 2);
 * ```
 */
export type AnyFn = (...args: never[]) => unknown;

/**
 * A settled future from {@linkcode FuncXExecutor.asCompleted} and its index in the input.
 *
 * @example What asCompleted yields
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CompletedFuture, FuncXExecutor, FuncXFuture } from "@funcx/sdk";
 * const futures = [new FuncXFuture<number>(), new FuncXFuture<number>()];
 * setTimeout(() => futures[1]!.setResult(2), 5);
 * setTimeout(() => futures[0]!.setResult(1), 30);
 * const order: number[] = [];
 * for await (const done of FuncXExecutor.asCompleted(futures)) {
 *   const c: CompletedFuture<number> = done;
 *   order.push(c.index);
 * }
 * assert.deepEqual(order, [1, 0]);
 * ```
 */
export interface CompletedFuture<T> {
  /** The settled future. */
  future: FuncXFuture<T>;
  /** Its position in the futures given to `asCompleted`. */
  index: number;
}

/**
 * Runs functions on an endpoint, as futures.
 *
 * @example Submit, await, map (when `FUNCX_ENDPOINT_ID` names an endpoint)
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXExecutor } from "@funcx/sdk";
 *
 * const endpointId = Deno.env.get("FUNCX_ENDPOINT_ID");
 * if (endpointId) {
 *   await using fx = new FuncXExecutor({ endpointId });
 *   const future = fx.submit((a: number, b: number) => a + b, 1, 2);
 *   assert.equal(await future, 3);
 *   const squares = [];
 *   for await (const r of fx.map((n: number) => n * n, [1, 2, 3])) squares.push(r);
 *   assert.deepEqual(squares, [1, 4, 9]);
 * }
 * ```
 *
 * @example Reattach to a task group from another process
 * ```ts
 * import { FuncXExecutor } from "@funcx/sdk";
 *
 * const endpointId = Deno.env.get("FUNCX_ENDPOINT_ID");
 * const group = Deno.env.get("FUNCX_TASK_GROUP_ID");
 * if (endpointId && group) {
 *   await using fx = new FuncXExecutor({ endpointId });
 *   fx.taskGroupId = group; // as funcX's `fxe.task_group_id = "..."`
 *   for (const future of await fx.reloadTasks()) console.log(future.taskId, await future);
 * }
 * ```
 *
 * @example Options are checked when the executor is built, before anything is sent
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXClient, FuncXExecutor } from "@funcx/sdk";
 * const client = new FuncXClient({ serviceAddress: "http://127.0.0.1:9", accessToken: "t" });
 * assert.throws(
 *   () => new FuncXExecutor({ endpointId: crypto.randomUUID(), client, batchSize: 0 }),
 *   RangeError,
 * );
 * const fx = new FuncXExecutor({ endpointId: crypto.randomUUID(), client });
 * fx.taskGroupId = "3f0c1a9e-7d2b-4c55-9e61-0a8f4b2c1d3e";
 * assert.equal(fx.taskGroupId, "3f0c1a9e-7d2b-4c55-9e61-0a8f4b2c1d3e");
 * assert.throws(() => (fx.taskGroupId = "not-a-uuid"), TypeError);
 * ```
 */
export class FuncXExecutor implements AsyncDisposable {
  /** The endpoint tasks go to. */
  readonly endpointId: string;
  /** The client used. */
  readonly client: FuncXClient;
  #taskGroupId: string;
  /** Name for logs. */
  readonly label: string;
  /**
   * Container that functions submitted from now on run in (`undefined`: none). It may be changed
   * between submissions; a function is registered once per container it is used with.
   */
  containerId: string | undefined;
  readonly #batchSize: number;
  /** Registered function ids by function (or map key), then by container id ("" for none). */
  readonly #functions = new Map<AnyFn | string, Map<string, Promise<string>>>();
  readonly #queue: Pending[] = [];
  readonly #open = new Map<string, FuncXFuture<unknown>>();
  /** Futures of batches whose submit request has not been answered yet. */
  readonly #inFlight = new Set<FuncXFuture<unknown>>();
  #unsent = 0;
  #flushing: Promise<void> | undefined;
  /** The result streams of the task groups this executor has tasks in, by group. */
  readonly #streams = new Map<string, SharedResultStream>();
  readonly #subscriber: ResultSubscriber = {
    offer: (r) => this.#deliver(r),
    awaitingIds: () => this.#unsent > 0,
    catchUp: () => void this.#catchUp([...this.#open.keys()]),
  };
  readonly #timeoutMs: number | undefined;
  readonly #userEndpointConfig: Record<string, unknown> | undefined;
  readonly #stop = new AbortController();
  /** Task ids waiting for the next read of outcomes from the service. */
  #toPoll = new Set<string>();
  #polling: Promise<void> | undefined;
  #closed = false;
  #submitted = 0;
  #idle: Array<() => void> = [];
  #linger: ReturnType<typeof setTimeout> | undefined;

  /** Builds an executor for one endpoint. */
  constructor(options: FuncXExecutorOptions) {
    if (typeof options.endpointId !== "string" || options.endpointId === "") {
      throw new TypeError(
        `Invalid endpointId ${JSON.stringify(options.endpointId)}: expected the endpoint's id ` +
          "(set FUNCX_ENDPOINT_ID, or see `funcx-endpoint list`)",
      );
    }
    this.endpointId = options.endpointId;
    this.client = options.client ?? new FuncXClient();
    this.#taskGroupId = checkTaskGroupId(options.taskGroupId ?? crypto.randomUUID());
    this.label = options.label ?? "FuncXExecutor";
    this.containerId = options.containerId;
    this.#batchSize = options.batchSize ?? 128;
    if (!Number.isInteger(this.#batchSize) || this.#batchSize < 1) {
      throw new RangeError(`Invalid batchSize ${this.#batchSize}: expected a whole number >= 1`);
    }
    this.#userEndpointConfig = options.userEndpointConfig;
    this.#timeoutMs = options.resultTimeoutMs;
    if (this.#timeoutMs !== undefined && !(this.#timeoutMs > 0)) {
      throw new RangeError(`Invalid resultTimeoutMs ${this.#timeoutMs}: expected a number > 0`);
    }
    const signal = options.signal;
    if (signal) {
      const abort = () => this.#abort(signal.reason);
      if (signal.aborted) abort();
      else signal.addEventListener("abort", abort, { once: true });
    }
  }

  /** Rejects every unsettled future with `reason` and takes no more tasks. */
  #abort(reason: unknown): void {
    this.#closed = true;
    this.#stop.abort(reason);
    for (const p of this.#queue.splice(0)) {
      this.#unsent--;
      p.future.setException(reason);
    }
    for (const f of [...this.#inFlight]) f.setException(reason);
    const open = [...this.#open.values()];
    this.#open.clear();
    for (const f of open) f.setException(reason);
    this.#checkIdle();
  }

  /**
   * The task group that tasks submitted from now on go into. Assigning it reattaches the
   * executor to that group, as funcX's `fxe.task_group_id = "..."` does: `reloadTasks()` then
   * gives futures for the group's tasks, and their results (and those of new submissions) come
   * to this executor. Futures of tasks already submitted into another group keep working.
   * Throws a `TypeError` for a value that is not a UUID.
   */
  get taskGroupId(): string {
    return this.#taskGroupId;
  }

  set taskGroupId(taskGroupId: string) {
    this.#taskGroupId = checkTaskGroupId(taskGroupId);
  }

  /** Tasks the service has accepted from this executor. */
  get taskCountSubmitted(): number {
    return this.#submitted;
  }

  /**
   * Registers a function for this executor. Throws a `TypeError` if it is already registered
   * (submit registers functions by itself; this is for choosing options or the id up front).
   */
  async registerFunction(
    fn: AnyFn,
    options: { functionId?: string; description?: string; public?: boolean } = {},
  ): Promise<string> {
    if (this.#cached(fn)) {
      throw new TypeError(`Function "${fn.name || "anonymous"}" is already registered`);
    }
    const id = options.functionId
      ? Promise.resolve(options.functionId)
      : this.client.registerFunction(fn, {
        ...(options.description ? { description: options.description } : {}),
        ...(options.public ? { public: options.public } : {}),
        ...(this.containerId ? { containerId: this.containerId } : {}),
      });
    return await this.#remember(fn, id);
  }

  #functionId(fn: AnyFn): Promise<string> {
    return this.#cached(fn) ??
      this.#remember(
        fn,
        this.client.registerFunction(
          fn,
          this.containerId ? { containerId: this.containerId } : {},
        ),
      );
  }

  /** The id registered for `key` with the current container, if any. */
  #cached(key: AnyFn | string): Promise<string> | undefined {
    return this.#functions.get(key)?.get(this.containerId ?? "");
  }

  /** Caches `id` for `key` and the current container; a failed registration is forgotten. */
  #remember(key: AnyFn | string, id: Promise<string>): Promise<string> {
    const container = this.containerId ?? "";
    let byContainer = this.#functions.get(key);
    if (!byContainer) this.#functions.set(key, byContainer = new Map());
    byContainer.set(container, id);
    id.catch(() => byContainer.delete(container));
    return id;
  }

  /** Runs `fn(...args)` on the endpoint. */
  /**
   * Runs `fn(...args)` on the endpoint. Throws a `SerializationError` (a `TypeError`) at once,
   * before anything is sent, when an argument cannot be sent (a function, say); a task that
   * returns a function fails with a `TaskExecutionFailed` whose remote error is a
   * `SerializationError`.
   */
  submit<F extends AnyFn>(fn: F, ...args: Parameters<F>): FuncXFuture<Awaited<ReturnType<F>>> {
    if (typeof fn !== "function") {
      throw new TypeError(`Cannot submit ${typeof fn}: expected a function`);
    }
    return this.#enqueue(() => this.#functionId(fn), args) as FuncXFuture<
      Awaited<ReturnType<F>>
    >;
  }

  /** Runs an already registered function by id. */
  submitToRegisteredFunction(
    functionId: string,
    args: readonly unknown[] = [],
    kwargs: Record<string, unknown> = {},
  ): FuncXFuture<unknown> {
    return this.#enqueue(() => Promise.resolve(functionId), args, kwargs);
  }

  /** Queues a task; `functionId` is asked for once its arguments are known to be sendable. */
  #enqueue(
    functionId: () => Promise<string>,
    args: readonly unknown[],
    kwargs: Record<string, unknown> = {},
  ): FuncXFuture<unknown> {
    if (this.#closed) throw new Error(`${this.label} is shut down: no new tasks`);
    const payload = packArgs(args, kwargs);
    const pending: Pending = {
      functionId: functionId(),
      payload,
      taskGroupId: this.#taskGroupId,
      future: new FuncXFuture<unknown>((f) => {
        // Not sent yet: take it out of the queue so it never runs.
        const i = this.#queue.indexOf(pending);
        if (i >= 0) {
          this.#queue.splice(i, 1);
          this.#unsent--;
          return true;
        }
        if (f.taskId === undefined || !this.#open.delete(f.taskId)) return false;
        // Sent: ask the service to stop it (best effort; the future settles as cancelled now).
        this.client.cancelTask(f.taskId).catch((err) =>
          log.warn("Cannot cancel task {id}: {err}", { id: f.taskId, err: String(err) })
        );
        return true;
      }),
    };
    pending.future.onSettled(() => this.#checkIdle());
    if (this.#timeoutMs !== undefined) this.#deadline(pending, this.#timeoutMs);
    this.#queue.push(pending);
    this.#unsent++;
    this.#ensureWatcher(pending.taskGroupId);
    this.#scheduleFlush();
    return pending.future;
  }

  /** Rejects `pending`'s future with a {@linkcode ResultTimeoutError} if it is open after `ms`. */
  #deadline(pending: Pending, ms: number): void {
    const timer = setTimeout(() => {
      const f = pending.future;
      if (f.done) return;
      const i = this.#queue.indexOf(pending);
      if (i >= 0) {
        this.#queue.splice(i, 1);
        this.#unsent--;
      }
      if (f.taskId !== undefined) this.#open.delete(f.taskId);
      f.setException(new ResultTimeoutError(f.taskId, ms));
    }, ms);
    pending.future.onSettled(() => clearTimeout(timer));
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = (async () => {
      // Let the current burst of submit() calls land in the queue before the first request.
      await Promise.resolve();
      // A few requests at once: the next batch is on its way while the service stores this one.
      const sending = new Set<Promise<void>>();
      while (this.#queue.length > 0 || sending.size > 0) {
        while (this.#queue.length > 0 && sending.size < SUBMITS_IN_FLIGHT) {
          const sent: Promise<void> = this.#send(this.#nextBatch())
            .finally(() => sending.delete(sent));
          sending.add(sent);
        }
        await Promise.race(sending);
      }
    })().finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0) this.#scheduleFlush();
    });
  }

  /** Takes the next batch off the queue: up to `batchSize` tasks of one task group. */
  #nextBatch(): Pending[] {
    const group = this.#queue[0]?.taskGroupId;
    let n = 0;
    while (
      n < this.#queue.length && n < this.#batchSize && this.#queue[n]!.taskGroupId === group
    ) n++;
    return this.#queue.splice(0, n);
  }

  async #send(batch: Pending[]): Promise<void> {
    const group = batch[0]!.taskGroupId;
    for (const p of batch) this.#inFlight.add(p.future);
    try {
      const ids = await Promise.all(batch.map((p) => p.functionId));
      const entries = batch.map((p, i): [string, string, string] => [
        ids[i]!,
        this.endpointId,
        p.payload,
      ]);
      // Whether this process's result queue is bound before the request goes out: if not, the
      // tasks may finish before it is, and their outcomes are read from the service once it is.
      const stream = this.#ensureWatcher(group);
      const epoch = stream?.epoch;
      // One key for every attempt: the service does the submit once.
      const idempotencyKey = crypto.randomUUID();
      const res = await this.#untilAnswered(
        "submit",
        () =>
          this.client.submit(entries, group, {
            createQueue: true,
            idempotencyKey,
            signal: this.#stop.signal,
            ...(this.#userEndpointConfig ? { userEndpointConfig: this.#userEndpointConfig } : {}),
          }),
      );
      const accepted: string[] = [];
      res.results.forEach((r, i) => {
        const f = batch[i]!.future;
        if (r.status === "Success") {
          this.#submitted++;
          f.setTaskId(r.task_uuid);
          if (f.done) return; // cancelled, timed out or aborted while in flight
          this.#open.set(r.task_uuid, f);
          accepted.push(r.task_uuid);
          const early = stream?.claim(r.task_uuid);
          if (early) this.#deliver(early);
        } else {
          f.setException(new FuncxAPIError(r.http_status_code, r.code, r.reason, r.error_args));
        }
      });
      this.#catchUpIfUnbound(stream, epoch, accepted);
    } catch (err) {
      // A refusal (for example a function or endpoint that is not the user's), or the executor
      // was aborted: the tasks were not accepted.
      log.error("{label}: a batch of {n} tasks could not be submitted: {err}", {
        label: this.label,
        n: batch.length,
        err: String(err),
      });
      for (const p of batch) p.future.setException(err);
    } finally {
      for (const p of batch) this.#inFlight.delete(p.future);
      this.#unsent -= batch.length;
      this.#checkIdle();
    }
  }

  /**
   * Runs `call` until the service answers: a transient failure (unreachable, 502/503/504, 429)
   * is retried with capped, jittered backoff, for as long as the executor is not aborted.
   */
  async #untilAnswered<T>(what: string, call: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      if (this.#stop.signal.aborted) throw this.#stop.signal.reason;
      try {
        return await call();
      } catch (err) {
        if (!isTransientError(err) || this.#stop.signal.aborted) throw err;
        const delay = backoffDelay(attempt, { minMs: 500, maxMs: 15_000 });
        log.warn("{label}: {what} waits for the service ({err}); retry in {ms} ms", {
          label: this.label,
          what,
          err: (err as Error).message,
          ms: Math.round(delay),
        });
        await sleep(delay, this.#stop.signal);
      }
    }
  }

  /**
   * Reads the outcomes of `taskIds` (those still open) from the service and settles the futures
   * of finished ones. One read at a time; ids asked for meanwhile join the next. A failed read
   * is left to the next one (the stream's poll comes back every few seconds).
   */
  #catchUp(taskIds: readonly string[]): Promise<void> {
    for (const id of taskIds) if (this.#open.has(id)) this.#toPoll.add(id);
    if (this.#polling || this.#toPoll.size === 0) return this.#polling ?? Promise.resolve();
    this.#polling = (async () => {
      while (this.#toPoll.size > 0 && !this.#stop.signal.aborted) {
        const ids = [...this.#toPoll].filter((id) => this.#open.has(id));
        this.#toPoll = new Set();
        if (ids.length === 0) break;
        let results: Map<string, BatchResult>;
        try {
          results = await this.client.getBatchResult(ids, { signal: this.#stop.signal });
        } catch (err) {
          log.warn("{label}: cannot read {n} task outcomes from the service now: {err}", {
            label: this.label,
            n: ids.length,
            err: String(err),
          });
          break;
        }
        for (const [id, r] of results) this.#settleFrom(id, r);
      }
    })().finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  /**
   * Reads `taskIds` from the service once this process's queue is bound, when it was not bound
   * (or was another queue) at `epoch`, before they were sent or read: their results may have
   * been forwarded before the queue existed.
   */
  #catchUpIfUnbound(
    stream: SharedResultStream | undefined,
    epoch: number | undefined,
    taskIds: string[],
  ): void {
    if (taskIds.length === 0 || !stream) return;
    if (epoch === undefined || epoch !== stream.epoch) {
      void stream.whenBound().then(() => this.#catchUp(taskIds));
    }
  }

  /** Settles an open future from a stored outcome; a pending task stays open. */
  #settleFrom(taskId: string, r: BatchResult): void {
    if (r.pending || r.status === "unknown") return;
    const f = this.#open.get(taskId);
    if (!f) return;
    this.#open.delete(taskId);
    if (r.error) f.setException(r.error);
    else f.setResult(r.result);
  }

  /** The result stream of `group`, joined if this executor has not yet (unless it is idle). */
  #ensureWatcher(group: string): SharedResultStream | undefined {
    const joined = this.#streams.get(group);
    if (joined || this.#idleNow()) return joined;
    // Executors of one task group in this process share one stream: one queue of this process.
    const stream = SharedResultStream.join(
      this.client.serviceAddress,
      group,
      () => this.client.openResultStream(group),
      this.#subscriber,
    );
    this.#streams.set(group, stream);
    return stream;
  }

  /** Whether nothing is queued, on its way or outstanding. */
  #idleNow(): boolean {
    return this.#open.size === 0 && this.#unsent === 0;
  }

  /** Settles the future of `r`'s task; `false` when this executor does not have it open. */
  #deliver(r: ResultMessage): boolean {
    const f = this.#open.get(r.task_id);
    if (!f) return false;
    this.#open.delete(r.task_id);
    if (r.error_details) {
      f.setException(
        taskFailure(r.task_id, r.error_details.code, remoteErrorOf(r.data)),
      );
      return true;
    }
    try {
      f.setResult(resultValue(r.task_id, r.data));
    } catch (err) {
      f.setException(err);
    }
    return true;
  }

  /** Leaves the result stream (the last executor out closes it). */
  async #closeStream(): Promise<void> {
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    await Promise.all(streams.map((s) => s.leave(this.#subscriber)));
  }

  #checkIdle(): void {
    if (!this.#idleNow()) return;
    // Keep the stream a moment for the next submit (a loop of submit-and-await), then close it
    // so that nothing keeps the process alive.
    clearTimeout(this.#linger);
    this.#linger = setTimeout(() => {
      if (!this.#idleNow()) return;
      void this.#closeStream();
    }, this.#closed ? 0 : IDLE_LINGER_MS);
    const waiters = this.#idle;
    this.#idle = [];
    for (const fn of waiters) fn();
  }

  /**
   * Runs `fn` on every item, `chunkSize` items per task, and yields the results in order.
   */
  async *map<T, R>(
    fn: (item: T) => R,
    items: Iterable<T>,
    options: { chunkSize?: number } = {},
  ): AsyncGenerator<Awaited<R>> {
    const size = options.chunkSize ?? 1;
    const chunks: T[][] = [];
    for (const item of items) {
      if (chunks.length === 0 || chunks[chunks.length - 1]!.length >= size) chunks.push([]);
      chunks[chunks.length - 1]!.push(item);
    }
    const id = this.#cached(mapKey(fn)) ?? this.#remember(
      mapKey(fn),
      this.client.registerFunctionSource(
        "__funcx_map__",
        `async function __funcx_map__(items) {\n  const f = (${fn.toString()});\n  const out = [];\n` +
          `  for (const x of items) out.push(await f(x));\n  return out;\n}`,
        this.containerId ? { containerId: this.containerId } : {},
      ),
    );
    const futures = chunks.map((c) => this.#enqueue(() => id, [c]));
    for (const f of futures) {
      for (const r of await f as Awaited<R>[]) yield r;
    }
  }

  /**
   * Yields futures as they settle, in completion order, each with its index in `futures`.
   * (Each comes wrapped: a future is a thenable, and `for await` would unwrap it to its value.)
   */
  static async *asCompleted<T>(
    futures: Iterable<FuncXFuture<T>>,
  ): AsyncGenerator<CompletedFuture<T>> {
    const all = [...futures];
    const ready: CompletedFuture<T>[] = [];
    let wake: (() => void) | undefined;
    all.forEach((future, index) =>
      future.onSettled(() => {
        ready.push({ future, index });
        wake?.();
      })
    );
    for (let handed = 0; handed < all.length; handed++) {
      if (ready.length === 0) await new Promise<void>((r) => (wake = r));
      wake = undefined;
      yield ready.shift()!;
    }
  }

  /**
   * Reattaches to this executor's task group (the one given as `taskGroupId`, or assigned to
   * {@linkcode FuncXExecutor.taskGroupId}): returns a future for every task of the group;
   * finished ones are settled at once, and the results of the others come to this executor.
   *
   * Unlike funcX, it does not cancel the futures this executor handed out before: in funcX that
   * is a side effect of replacing its one result watcher, while here the executor listens on
   * every task group it has open tasks in. A task this executor already has open gets the same
   * future back.
   */
  async reloadTasks(): Promise<FuncXFuture<unknown>[]> {
    const group = this.#taskGroupId;
    const signal = this.#stop.signal;
    const ids = await this.#untilAnswered(
      "reloadTasks",
      () => this.client.getTaskGroup(group, { signal }),
    );
    const results = await this.#untilAnswered(
      "reloadTasks",
      () => this.client.getBatchResult(ids, { signal }),
    );
    const out: FuncXFuture<unknown>[] = [];
    const pending: string[] = [];
    for (const id of ids) {
      const f = this.#open.get(id) ?? new FuncXFuture<unknown>((x) => this.#open.delete(x.taskId!));
      f.setTaskId(id);
      const r = results.get(id)!;
      if (!r.pending) {
        this.#open.delete(id);
        if (r.error) f.setException(r.error);
        else f.setResult(r.result);
      } else if (!this.#open.has(id)) {
        this.#open.set(id, f);
        pending.push(id);
        f.onSettled(() => this.#checkIdle());
      }
      out.push(f);
    }
    if (ids.length === 0) {
      log.warn("{label}: task group {group} has no tasks", { label: this.label, group });
    }
    // Results stored between the read above and the stream's queue being bound are read again.
    const epoch = this.#streams.get(group)?.epoch;
    this.#catchUpIfUnbound(this.#ensureWatcher(group), epoch, pending);
    this.#checkIdle();
    return out;
  }

  /** Resolves when nothing is queued or outstanding. */
  #whenIdle(): Promise<void> {
    if (this.#idleNow()) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  /**
   * Stops taking tasks and sends those already submitted. With `wait` (default) it resolves once
   * every future has settled; with `cancelFutures` the tasks not yet sent are cancelled instead.
   * Safe to call twice.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    this.#closed = true;
    if (options.cancelFutures) {
      for (const p of [...this.#queue]) p.future.cancel();
    }
    // Tasks already handed to submit() are sent either way: a script may exit right after.
    while (this.#flushing) await this.#flushing;
    if (options.wait ?? true) {
      await this.#whenIdle();
      clearTimeout(this.#linger);
    }
    await this.#closeStream();
  }

  /** `await using` support: shuts down and waits for outstanding futures. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ wait: true });
  }
}

const mapKeys = new WeakMap<AnyFn, string>();
function mapKey(fn: AnyFn): string {
  let k = mapKeys.get(fn);
  if (!k) {
    k = `map:${crypto.randomUUID()}`;
    mapKeys.set(fn, k);
  }
  return k;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkTaskGroupId(taskGroupId: unknown): string {
  if (typeof taskGroupId !== "string" || !UUID.test(taskGroupId)) {
    throw new TypeError(
      `Invalid task group id ${JSON.stringify(taskGroupId)}: expected a UUID such as ` +
        `"${crypto.randomUUID()}"`,
    );
  }
  return taskGroupId.toLowerCase();
}
