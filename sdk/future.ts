/**
 * `FuncXFuture`: the promise of one task's result, as the executor hands it out. It learns its
 * `taskId` once the service has acknowledged the batch it was in.
 *
 * @module
 */

/**
 * The rejection of a future that was cancelled.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXFuture, TaskCancelledError } from "@funcx/sdk";
 * const f = new FuncXFuture<number>();
 * f.cancel();
 * await f.then(() => {}, (e) => assert.ok(e instanceof TaskCancelledError));
 * ```
 */
export class TaskCancelledError extends Error {
  /** Always `"TaskCancelledError"`. */
  override name = "TaskCancelledError";
}

/**
 * Lifecycle of a future.
 *
 * @example A future's state as it settles
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXFuture, type FutureState } from "@funcx/sdk";
 * const f = new FuncXFuture<number>();
 * const before: FutureState = f.state;
 * f.setTaskId(crypto.randomUUID());
 * f.setResult(1);
 * assert.deepEqual([before, f.state], ["pending", "done"]);
 * ```
 */
export type FutureState = "pending" | "submitted" | "done" | "failed" | "cancelled";

/**
 * A task's future result; await it like a promise.
 *
 * @example Await it like a promise
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXFuture } from "@funcx/sdk";
 * const f = new FuncXFuture<string>();
 * setTimeout(() => f.setResult("ready"), 10);
 * assert.equal(await f, "ready");
 * assert.ok(f.done);
 * ```
 */
export class FuncXFuture<T> implements PromiseLike<T> {
  readonly #promise: Promise<T>;
  #resolve!: (v: T) => void;
  #reject!: (e: unknown) => void;
  #state: FutureState = "pending";
  #taskId: string | undefined;
  #onCancel: ((f: FuncXFuture<T>) => boolean) | undefined;
  #settled: Array<() => void> = [];

  /**
   * Builds a pending future; `onCancel` decides whether a cancel takes effect.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { FuncXFuture } from "@funcx/sdk";
   * const f = new FuncXFuture<number>();
   * f.setResult(3);
   * assert.ok(await f === 3);
   * ```
   */
  constructor(onCancel?: (f: FuncXFuture<T>) => boolean) {
    this.#promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // An unawaited failed future must not crash the process: errors surface where awaited.
    this.#promise.catch(() => {});
    this.#onCancel = onCancel;
  }

  /** The task id, once the service acknowledged the task. */
  get taskId(): string | undefined {
    return this.#taskId;
  }

  /** The future's state. */
  get state(): FutureState {
    return this.#state;
  }

  /** Whether it has settled (result, error or cancelled). */
  get done(): boolean {
    return this.#state === "done" || this.#state === "failed" || this.#state === "cancelled";
  }

  /** Sets the task id (the executor does this). */
  setTaskId(taskId: string): void {
    this.#taskId = taskId;
    if (this.#state === "pending") this.#state = "submitted";
  }

  /** Resolves the future; ignored once settled. */
  setResult(value: T): void {
    if (this.done) return;
    this.#state = "done";
    this.#resolve(value);
    this.#fire();
  }

  /** Rejects the future; ignored once settled. */
  setException(error: unknown): void {
    if (this.done) return;
    this.#state = "failed";
    this.#reject(error);
    this.#fire();
  }

  /**
   * Cancels the task: a task not yet sent never runs; a sent one is cancelled at the service
   * best-effort. Returns whether the future was cancelled (false once it has settled).
   */
  cancel(): boolean {
    if (this.done) return false;
    if (this.#onCancel && !this.#onCancel(this)) return false;
    this.#state = "cancelled";
    this.#reject(new TaskCancelledError(`Task ${this.#taskId ?? "(not sent)"} was cancelled`));
    this.#fire();
    return true;
  }

  /** Runs `fn` once settled (at once if already). */
  onSettled(fn: () => void): void {
    if (this.done) fn();
    else this.#settled.push(fn);
  }

  #fire(): void {
    const fns = this.#settled;
    this.#settled = [];
    for (const fn of fns) fn();
  }

  /** Promise interface. */
  then<A = T, B = never>(
    onfulfilled?: ((value: T) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#promise.then(onfulfilled, onrejected);
  }

  /** Promise interface. */
  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<T | B> {
    return this.#promise.catch(onrejected);
  }
}
