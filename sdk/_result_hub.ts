/**
 * One result stream per task group per process, shared by every executor of that group. Two
 * consumers on one queue would split its results between them, and an executor handed a result
 * for another executor's task could only drop it, leaving that future waiting forever. Here the
 * one consumer hands each result to the executor that has the task open, and keeps results whose
 * task no executor knows yet (its submit answer is still on the way) until it is claimed.
 *
 * @module
 */
import type { ResultMessage } from "./protocol/mod.ts";
import { ResultWatcher } from "./result_watcher.ts";

/** An executor as the hub sees it. */
export interface ResultSubscriber {
  /** Takes the result if it has `r.task_id` open; `false` when the task is not its. */
  offer(r: ResultMessage): boolean;
  /** Whether it has tasks whose submit answer has not arrived (their results may come first). */
  awaitingIds(): boolean;
  /** The stream is lost for good. */
  fail(err: Error): void;
}

/** What the broker login of a result stream comes from (`FuncXClient.getResultAmqpUrl`). */
export type ResultUrl = Promise<{ connection_url: string; queue_prefix: string }>;

const streams = new Map<string, SharedResultStream>();

/** A task group's result stream in this process. */
export class SharedResultStream {
  readonly #key: string;
  readonly #subscribers = new Set<ResultSubscriber>();
  readonly #early = new Map<string, ResultMessage>();
  readonly #watcher: ResultWatcher;

  private constructor(key: string, url: ResultUrl, taskGroupId: string) {
    this.#key = key;
    this.#watcher = new ResultWatcher(url, taskGroupId, {
      onResult: (r) => this.#route(r),
      onGiveUp: (err) => {
        streams.delete(this.#key);
        const subs = [...this.#subscribers];
        this.#subscribers.clear();
        this.#early.clear();
        for (const s of subs) s.fail(err);
      },
    });
  }

  /**
   * Joins the stream of `taskGroupId` at `serviceAddress`, starting it (with the login `url()`
   * gives) when this process has none yet.
   */
  static join(
    serviceAddress: string,
    taskGroupId: string,
    url: () => ResultUrl,
    subscriber: ResultSubscriber,
  ): SharedResultStream {
    const key = `${serviceAddress} ${taskGroupId}`;
    let s = streams.get(key);
    if (!s) {
      s = new SharedResultStream(key, url(), taskGroupId);
      streams.set(key, s);
    }
    s.#subscribers.add(subscriber);
    return s;
  }

  /** A result that arrived before its task was known here, if any (taken out). */
  claim(taskId: string): ResultMessage | undefined {
    const r = this.#early.get(taskId);
    if (r) this.#early.delete(taskId);
    return r;
  }

  /** Leaves the stream; the last subscriber out closes it. */
  async leave(subscriber: ResultSubscriber): Promise<void> {
    if (!this.#subscribers.delete(subscriber) || this.#subscribers.size > 0) return;
    if (streams.get(this.#key) === this) streams.delete(this.#key);
    this.#early.clear();
    await this.#watcher.close();
  }

  #route(r: ResultMessage): void {
    let waiting = false;
    for (const s of this.#subscribers) {
      if (s.offer(r)) return;
      waiting ||= s.awaitingIds();
    }
    // No executor here has the task: keep it while one may still learn the id. Otherwise it is
    // a task of another process (or a duplicate); the service keeps every result for its TTL.
    if (waiting) this.#early.set(r.task_id, r);
  }
}
