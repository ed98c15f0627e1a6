/**
 * One result stream per task group per process, shared by every executor of that group in the
 * process (each process has a queue of its own, so each gets every result). The one consumer
 * hands each result to the executor that has the task open, and keeps results whose task no
 * executor knows yet (its submit answer is still on the way) until it is claimed.
 *
 * The stream is only the fast path. The hub tells its executors when to read outcomes from the
 * service instead: when a new queue was bound (results stored before it existed are not on it),
 * every few seconds while the consumer is down, and now and then while it is up, as a safety net.
 *
 * @module
 */
import type { ResultMessage } from "./protocol/mod.ts";
import type { ResultStreamInfo } from "./_client_task_groups.ts";
import { ResultWatcher } from "./result_watcher.ts";

/** An executor as the hub sees it. */
export interface ResultSubscriber {
  /**
   * Takes the result if it has `r.task_id` open; `false` when the task is not its. `from`: the
   * endpoint that sent it straight to the stream (see `ResultWatcherHandlers.onResult`).
   */
  offer(r: ResultMessage, from?: string): boolean;
  /** Whether it has tasks whose submit answer has not arrived (their results may come first). */
  awaitingIds(): boolean;
  /** Reads the outcomes of its open tasks from the service (never throws). */
  catchUp(): void;
}

/** How often outcomes are read from the service while the consumer is down. */
const POLL_DOWN_MS = 3_000;
/** How often they are read while it is up (a safety net; the stream should have them). */
const POLL_UP_MS = 30_000;

const streams = new Map<string, SharedResultStream>();

/**
 * Queues of streams closed lately, by stream key, for the next stream of the group to reuse: a
 * script that submits, waits, and submits again keeps one queue instead of leaving one behind
 * (unused, until the broker expires it) each time. A queue handed out is taken out of here, so
 * one that turns out to be gone is not handed out again.
 */
const recentQueues = new Map<string, { info: ResultStreamInfo; closedAt: number }>();
/** How long after its stream closed a queue is reused (the service expires it later). */
const REUSE_MS = 60_000;

/** A task group's result stream in this process. */
export class SharedResultStream {
  readonly #key: string;
  readonly #subscribers = new Set<ResultSubscriber>();
  readonly #early = new Map<string, { result: ResultMessage; from: string | undefined }>();
  readonly #watcher: ResultWatcher;
  /** Counts queues bound so far; undefined while none is. */
  #epoch: number | undefined;
  #bound: Array<() => void> = [];
  #consuming = false;
  #wasDown = false;
  #poll: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  #info: ResultStreamInfo | undefined;

  private constructor(key: string, open: () => Promise<ResultStreamInfo>) {
    this.#key = key;
    const reuse = () => {
      const recent = recentQueues.get(key);
      recentQueues.delete(key);
      if (recent && Date.now() - recent.closedAt < REUSE_MS) return Promise.resolve(recent.info);
      return open();
    };
    this.#watcher = new ResultWatcher(async () => (this.#info = await reuse()), {
      onResult: (r, from) => this.#route(r, from),
      onAttached: ({ fresh, consuming }) => {
        const reconnected = consuming && this.#wasDown;
        this.#consuming = consuming;
        if (consuming) this.#wasDown = false;
        if (fresh) {
          this.#epoch = (this.#epoch ?? 0) + 1;
          const waiters = this.#bound;
          this.#bound = [];
          for (const w of waiters) w();
        }
        // A new queue lacks what was stored before it; after a reconnect, check anyway.
        if (fresh || reconnected) this.#catchUp();
        else this.#schedulePoll();
      },
      onDown: () => {
        this.#consuming = false;
        this.#wasDown = true;
        this.#schedulePoll();
      },
    });
    this.#schedulePoll();
  }

  /**
   * Joins the stream of `taskGroupId` at `serviceAddress`, starting it (with the queue `open()`
   * gives) when this process has none yet.
   */
  static join(
    serviceAddress: string,
    taskGroupId: string,
    open: () => Promise<ResultStreamInfo>,
    subscriber: ResultSubscriber,
  ): SharedResultStream {
    const key = `${serviceAddress} ${taskGroupId}`;
    let s = streams.get(key);
    if (!s) {
      s = new SharedResultStream(key, open);
      streams.set(key, s);
    }
    s.#subscribers.add(subscriber);
    return s;
  }

  /** Which queue is bound now (changes when a new one is), or undefined while none is. */
  get epoch(): number | undefined {
    return this.#epoch;
  }

  /** Resolves once a queue is bound (at once if one is). */
  whenBound(): Promise<void> {
    if (this.#epoch !== undefined) return Promise.resolve();
    return new Promise((r) => this.#bound.push(r));
  }

  /**
   * A result that arrived before its task was known here, if any (taken out), with the endpoint
   * that sent it straight to the stream.
   */
  claim(taskId: string): { result: ResultMessage; from: string | undefined } | undefined {
    const r = this.#early.get(taskId);
    if (r) this.#early.delete(taskId);
    return r;
  }

  /** Leaves the stream; the last subscriber out closes it. */
  async leave(subscriber: ResultSubscriber): Promise<void> {
    if (!this.#subscribers.delete(subscriber) || this.#subscribers.size > 0) return;
    if (streams.get(this.#key) === this) streams.delete(this.#key);
    this.#closed = true;
    clearTimeout(this.#poll);
    this.#early.clear();
    for (const w of this.#bound) w();
    this.#bound = [];
    await this.#watcher.close();
    if (this.#info) recentQueues.set(this.#key, { info: this.#info, closedAt: Date.now() });
  }

  #catchUp(): void {
    for (const s of this.#subscribers) s.catchUp();
    this.#schedulePoll();
  }

  #schedulePoll(): void {
    clearTimeout(this.#poll);
    if (this.#closed) return;
    this.#poll = setTimeout(() => this.#catchUp(), this.#consuming ? POLL_UP_MS : POLL_DOWN_MS);
  }

  #route(r: ResultMessage, from: string | undefined): void {
    let waiting = false;
    for (const s of this.#subscribers) {
      if (s.offer(r, from)) return;
      waiting ||= s.awaitingIds();
    }
    // No executor here has the task: keep it while one may still learn the id. Otherwise it is
    // a task of another process (or a duplicate); the service keeps every result for its TTL.
    if (waiting) this.#early.set(r.task_id, { result: r, from });
  }
}
