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
 * The executor holds the futures' lifecycle and composes its parts: `_executor_options.ts` (the
 * options and their checks), `_function_registry.ts` (functions registered once per container),
 * `_submit_batcher.ts` (the queue and the submit requests), `_task_outcomes.ts` (open tasks, the
 * result streams, reads from the service), `_until_answered.ts` (waiting out the service),
 * `_executor_map.ts` and `_as_completed.ts`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { FuncXClient } from "./client.ts";
import { ResultTimeoutError } from "./errors.ts";
import { FuncXFuture } from "./future.ts";
import { packArgs } from "./protocol/mod.ts";
import { asCompleted, type CompletedFuture } from "./_as_completed.ts";
import { chunked, MAP_FUNCTION_NAME, mapFunctionSource, mapKey } from "./_executor_map.ts";
import {
  checkTaskGroupId,
  type FuncXExecutorOptions,
  resolveExecutorOptions,
  type ShutdownOptions,
} from "./_executor_options.ts";
import { type AnyFn, FunctionRegistry } from "./_function_registry.ts";
import { type PendingTask, SubmitBatcher } from "./_submit_batcher.ts";
import { TaskOutcomes } from "./_task_outcomes.ts";
import { untilAnswered } from "./_until_answered.ts";
import { type ResourceSpecification, toResourceSpecificationWire } from "./mpi_function.ts";
import type { ResourceSpecificationWire } from "./protocol/resource_specification.ts";

export type { AnyFn } from "./_function_registry.ts";
export type { CompletedFuture } from "./_as_completed.ts";
export type { FuncXExecutorOptions, ShutdownOptions } from "./_executor_options.ts";

const log = getLogger(["funcx", "sdk", "executor"]);

/** How long an idle executor keeps its result stream open for the next task. */
const IDLE_LINGER_MS = 200;

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
  #resourceSpecification: ResourceSpecificationWire | undefined;
  readonly #functions = new FunctionRegistry();
  readonly #batcher: SubmitBatcher;
  readonly #outcomes: TaskOutcomes;
  readonly #timeoutMs: number | undefined;
  readonly #stop = new AbortController();
  #closed = false;
  #idle: Array<() => void> = [];
  #linger: ReturnType<typeof setTimeout> | undefined;

  /** Builds an executor for one endpoint. */
  constructor(options: FuncXExecutorOptions) {
    const config = resolveExecutorOptions(options);
    this.endpointId = config.endpointId;
    this.client = config.client;
    this.#taskGroupId = config.taskGroupId;
    this.label = config.label;
    this.containerId = config.containerId;
    this.#resourceSpecification = config.resourceSpecification;
    this.#timeoutMs = config.resultTimeoutMs;
    this.#outcomes = new TaskOutcomes({
      client: this.client,
      label: this.label,
      endpointId: this.endpointId,
      signal: this.#stop.signal,
      awaitingIds: () => this.#batcher.unsent > 0,
      idle: () => this.#idleNow(),
    });
    this.#batcher = new SubmitBatcher({
      client: this.client,
      endpointId: this.endpointId,
      batchSize: config.batchSize,
      userEndpointConfig: config.userEndpointConfig,
      label: this.label,
      signal: this.#stop.signal,
      outcomes: this.#outcomes,
      onBatchDone: () => this.#checkIdle(),
    });
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
    this.#batcher.rejectAll(reason);
    this.#outcomes.rejectAll(reason);
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

  /**
   * What `MPIFunction` tasks submitted from now on ask for (nodes, ranks per node, ranks), with
   * what was left out filled in; `undefined` for the endpoint's default (one node, one rank).
   * Set it before a `submit` for per-task values; a `TypeError` or `RangeError` names a bad
   * field (not a positive integer, or more ranks than nodes × ranks per node).
   */
  get resourceSpecification(): ResourceSpecification | undefined {
    const s = this.#resourceSpecification;
    return s && { numNodes: s.num_nodes, ranksPerNode: s.ranks_per_node, numRanks: s.num_ranks };
  }

  set resourceSpecification(spec: ResourceSpecification | undefined) {
    this.#resourceSpecification = spec ? toResourceSpecificationWire(spec) : undefined;
  }

  /** Tasks the service has accepted from this executor. */
  get taskCountSubmitted(): number {
    return this.#batcher.submitted;
  }

  /**
   * Registers a function for this executor. Throws a `TypeError` if it is already registered
   * (submit registers functions by itself; this is for choosing options or the id up front).
   */
  async registerFunction(
    fn: AnyFn,
    options: { functionId?: string; description?: string; public?: boolean } = {},
  ): Promise<string> {
    if (this.#functions.get(fn, this.containerId)) {
      throw new TypeError(`Function "${fn.name || "anonymous"}" is already registered`);
    }
    const id = options.functionId
      ? Promise.resolve(options.functionId)
      : this.client.registerFunction(fn, {
        ...(options.description ? { description: options.description } : {}),
        ...(options.public ? { public: options.public } : {}),
        ...this.#containerOption(),
      });
    return await this.#functions.remember(fn, this.containerId, id);
  }

  /** The registration option for the current container. */
  #containerOption(): { containerId?: string } {
    return this.containerId ? { containerId: this.containerId } : {};
  }

  #functionId(fn: AnyFn): Promise<string> {
    return this.#functions.ensure(
      fn,
      this.containerId,
      () => this.client.registerFunction(fn, this.#containerOption()),
    );
  }

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
    const pending: PendingTask = {
      functionId: functionId(),
      payload,
      taskGroupId: this.#taskGroupId,
      resourceSpecification: this.#resourceSpecification,
      future: new FuncXFuture<unknown>((f) => {
        // Not sent yet: take it out of the queue so it never runs.
        if (this.#batcher.remove(pending)) return true;
        if (f.taskId === undefined || !this.#outcomes.forget(f.taskId)) return false;
        // Sent: ask the service to stop it (best effort; the future settles as cancelled now).
        this.client.cancelTask(f.taskId).catch((err) =>
          log.warn("Cannot cancel task {id}: {err}", { id: f.taskId, err: String(err) })
        );
        return true;
      }),
    };
    pending.future.onSettled(() => this.#checkIdle());
    if (this.#timeoutMs !== undefined) this.#deadline(pending, this.#timeoutMs);
    this.#batcher.push(pending);
    return pending.future;
  }

  /** Rejects `pending`'s future with a {@linkcode ResultTimeoutError} if it is open after `ms`. */
  #deadline(pending: PendingTask, ms: number): void {
    const timer = setTimeout(() => {
      const f = pending.future;
      if (f.done) return;
      this.#batcher.remove(pending);
      if (f.taskId !== undefined) this.#outcomes.forget(f.taskId);
      f.setException(new ResultTimeoutError(f.taskId, ms));
    }, ms);
    pending.future.onSettled(() => clearTimeout(timer));
  }

  /** Whether nothing is queued, on its way or outstanding. */
  #idleNow(): boolean {
    return this.#outcomes.size === 0 && this.#batcher.unsent === 0;
  }

  #checkIdle(): void {
    if (!this.#idleNow()) return;
    // Keep the stream a moment for the next submit (a loop of submit-and-await), then close it
    // so that nothing keeps the process alive.
    clearTimeout(this.#linger);
    this.#linger = setTimeout(() => {
      if (!this.#idleNow()) return;
      void this.#outcomes.close();
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
    const chunks = chunked(items, options.chunkSize ?? 1);
    const id = this.#functions.ensure(
      mapKey(fn),
      this.containerId,
      () =>
        this.client.registerFunctionSource(
          MAP_FUNCTION_NAME,
          mapFunctionSource(fn),
          this.#containerOption(),
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
    yield* asCompleted(futures);
  }

  /**
   * Reattaches to this executor's task group (the one given as `taskGroupId`, or assigned to
   * {@linkcode FuncXExecutor.taskGroupId}): returns a future for every task of the group;
   * finished ones are settled at once, and the results of the others come to this executor, each
   * from the endpoint its task went to (which may be another than this executor's).
   *
   * Unlike funcX, it does not cancel the futures this executor handed out before: in funcX that
   * is a side effect of replacing its one result watcher, while here the executor listens on
   * every task group it has open tasks in. A task this executor already has open gets the same
   * future back.
   */
  async reloadTasks(): Promise<FuncXFuture<unknown>[]> {
    const group = this.#taskGroupId;
    const signal = this.#stop.signal;
    const waiting = { what: "reloadTasks", label: this.label, signal };
    const ids = await untilAnswered(() => this.client.getTaskGroup(group, { signal }), waiting);
    const results = await untilAnswered(
      () => this.client.getBatchResult(ids, { signal }),
      waiting,
    );
    if (ids.length === 0) {
      log.warn("{label}: task group {group} has no tasks", { label: this.label, group });
    }
    const out = this.#outcomes.reattach(group, ids, results, () => this.#checkIdle());
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
    if (options.cancelFutures) this.#batcher.cancelQueued();
    // Tasks already handed to submit() are sent either way: a script may exit right after.
    await this.#batcher.flushed();
    if (options.wait ?? true) {
      await this.#whenIdle();
      clearTimeout(this.#linger);
    }
    await this.#outcomes.close();
  }

  /** `await using` support: shuts down and waits for outstanding futures. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ wait: true });
  }
}
