/**
 * `FuncXExecutor`: submit functions to one endpoint and get futures back. Submissions are drained
 * into batches of up to `batchSize` per `POST /v2/submit` as fast as they come; results arrive on
 * the task group's AMQP stream, and results that arrive before their future knows its task id are
 * kept until it does. When nothing is outstanding the stream is closed, so a script exits when
 * its work is done.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { FuncXClient, remoteErrorOf } from "./client.ts";
import { FuncxAPIError, taskFailure } from "./errors.ts";
import { FuncXFuture } from "./future.ts";
import { deserialize, packArgs, type ResultMessage } from "./protocol/mod.ts";
import { type ResultSubscriber, SharedResultStream } from "./_result_hub.ts";

const log = getLogger(["funcx", "sdk", "executor"]);

/** How long an idle executor keeps its result stream open for the next task. */
const IDLE_LINGER_MS = 200;

/** Options of {@linkcode FuncXExecutor}. */
export interface FuncXExecutorOptions {
  /** Endpoint the tasks run on. */
  endpointId: string;
  /** Client to use. @default a new `FuncXClient()` from the environment */
  client?: FuncXClient;
  /** Task group to submit into (reuse one to reattach with `reloadTasks`). @default a new one */
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
}

/** Options of {@linkcode FuncXExecutor.shutdown}. */
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
}

/** Any function the executor can send. */
export type AnyFn = (...args: never[]) => unknown;

/** A settled future from {@linkcode FuncXExecutor.asCompleted} and its index in the input. */
export interface CompletedFuture<T> {
  /** The settled future. */
  future: FuncXFuture<T>;
  /** Its position in the futures given to `asCompleted`. */
  index: number;
}

/**
 * Runs functions on an endpoint, as futures.
 *
 * @example
 * ```ts ignore
 * import { FuncXExecutor } from "@funcx/sdk";
 * await using fx = new FuncXExecutor({ endpointId: Deno.env.get("FUNCX_ENDPOINT_ID")! });
 * const future = fx.submit((a: number, b: number) => a + b, 1, 2);
 * console.log(await future); // 3
 * ```
 */
export class FuncXExecutor implements AsyncDisposable {
  /** The endpoint tasks go to. */
  readonly endpointId: string;
  /** The client used. */
  readonly client: FuncXClient;
  /** The task group of this executor's tasks. */
  readonly taskGroupId: string;
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
  #unsent = 0;
  #flushing: Promise<void> | undefined;
  #stream: SharedResultStream | undefined;
  readonly #subscriber: ResultSubscriber = {
    offer: (r) => this.#deliver(r),
    awaitingIds: () => this.#unsent > 0,
    fail: (err) => {
      this.#stream = undefined;
      for (const f of this.#open.values()) f.setException(err);
      this.#open.clear();
    },
  };
  #closed = false;
  #submitted = 0;
  #idle: Array<() => void> = [];
  #linger: ReturnType<typeof setTimeout> | undefined;
  #resultUrl: ReturnType<FuncXClient["getResultAmqpUrl"]> | undefined;

  /** Builds an executor for one endpoint. */
  constructor(options: FuncXExecutorOptions) {
    this.endpointId = options.endpointId;
    this.client = options.client ?? new FuncXClient();
    this.taskGroupId = options.taskGroupId ?? crypto.randomUUID();
    this.label = options.label ?? "FuncXExecutor";
    this.containerId = options.containerId;
    this.#batchSize = options.batchSize ?? 128;
    if (!Number.isInteger(this.#batchSize) || this.#batchSize < 1) {
      throw new RangeError(`Invalid batchSize ${this.#batchSize}: expected a whole number >= 1`);
    }
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
  submit<F extends AnyFn>(fn: F, ...args: Parameters<F>): FuncXFuture<Awaited<ReturnType<F>>> {
    return this.#enqueue(this.#functionId(fn), args) as FuncXFuture<Awaited<ReturnType<F>>>;
  }

  /** Runs an already registered function by id. */
  submitToRegisteredFunction(
    functionId: string,
    args: readonly unknown[] = [],
    kwargs: Record<string, unknown> = {},
  ): FuncXFuture<unknown> {
    return this.#enqueue(Promise.resolve(functionId), args, kwargs);
  }

  #enqueue(
    functionId: Promise<string>,
    args: readonly unknown[],
    kwargs: Record<string, unknown> = {},
  ): FuncXFuture<unknown> {
    if (this.#closed) throw new Error(`${this.label} is shut down: no new tasks`);
    const pending: Pending = {
      functionId,
      payload: packArgs(args, kwargs),
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
    this.#queue.push(pending);
    this.#unsent++;
    this.#scheduleFlush();
    return pending.future;
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = (async () => {
      // Let the current burst of submit() calls land in the queue before the first request.
      await Promise.resolve();
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#batchSize);
        await this.#send(batch);
      }
    })().finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0) this.#scheduleFlush();
    });
  }

  async #send(batch: Pending[]): Promise<void> {
    try {
      const ids = await Promise.all(batch.map((p) => p.functionId));
      const res = await this.client.submit(
        batch.map((p, i) => [ids[i]!, this.endpointId, p.payload]),
        this.taskGroupId,
        { createQueue: true },
      );
      res.results.forEach((r, i) => {
        const f = batch[i]!.future;
        if (r.status === "Success") {
          this.#submitted++;
          f.setTaskId(r.task_uuid);
          if (f.done) return; // cancelled while in flight
          this.#open.set(r.task_uuid, f);
          const early = this.#stream?.claim(r.task_uuid);
          if (early) this.#deliver(early);
        } else {
          f.setException(new FuncxAPIError(r.http_status_code, r.code, r.reason, r.error_args));
        }
      });
      this.#ensureWatcher();
    } catch (err) {
      log.error("{label}: a batch of {n} tasks could not be submitted: {err}", {
        label: this.label,
        n: batch.length,
        err: String(err),
      });
      for (const p of batch) p.future.setException(err);
    } finally {
      this.#unsent -= batch.length;
      this.#checkIdle();
    }
  }

  #ensureWatcher(): void {
    if (this.#stream || this.#open.size === 0) return;
    // Executors of one task group in this process share one stream (and one broker login:
    // asking again would make, and rotate, another).
    this.#stream = SharedResultStream.join(
      this.client.serviceAddress,
      this.taskGroupId,
      () => {
        this.#resultUrl ??= this.client.getResultAmqpUrl();
        this.#resultUrl.catch(() => (this.#resultUrl = undefined));
        return this.#resultUrl;
      },
      this.#subscriber,
    );
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
      f.setResult(deserialize(r.data));
    } catch (err) {
      f.setException(err);
    }
    return true;
  }

  /** Leaves the result stream (the last executor out closes it). */
  async #closeStream(): Promise<void> {
    const s = this.#stream;
    this.#stream = undefined;
    await s?.leave(this.#subscriber);
  }

  #checkIdle(): void {
    if (this.#unsent > 0 || this.#open.size > 0) return;
    // Keep the stream a moment for the next submit (a loop of submit-and-await), then close it
    // so that nothing keeps the process alive.
    clearTimeout(this.#linger);
    this.#linger = setTimeout(() => {
      if (this.#unsent > 0 || this.#open.size > 0) return;
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
    const futures = chunks.map((c) => this.#enqueue(id, [c]));
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
   * Reattaches to this executor's task group (give the same `taskGroupId` in another process):
   * returns a future for every task of the group; finished ones are settled at once.
   */
  async reloadTasks(): Promise<FuncXFuture<unknown>[]> {
    const ids = await this.client.getTaskGroup(this.taskGroupId);
    const results = await this.client.getBatchResult(ids);
    const out: FuncXFuture<unknown>[] = [];
    for (const id of ids) {
      const f = this.#open.get(id) ?? new FuncXFuture<unknown>((x) => this.#open.delete(x.taskId!));
      f.setTaskId(id);
      const r = results.get(id)!;
      if (!r.pending) {
        if (r.error) f.setException(r.error);
        else f.setResult(r.result);
      } else {
        this.#open.set(id, f);
        f.onSettled(() => this.#checkIdle());
      }
      out.push(f);
    }
    this.#ensureWatcher();
    return out;
  }

  /** Resolves when nothing is queued or outstanding. */
  #whenIdle(): Promise<void> {
    if (this.#unsent === 0 && this.#open.size === 0) return Promise.resolve();
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
