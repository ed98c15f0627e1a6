/**
 * The result stream of one process on one task group: an AMQP consumer on a queue of its own
 * (made by the service with `POST /v2/result_streams`, bound to the group's results), with the
 * user's broker login. The stream is a fast path, never the only way a result arrives: it
 * reconnects for as long as it is open, with capped, jittered backoff, and says when it is
 * attached and when it is down, so its owner reads outcomes from the service meanwhile. When its
 * queue is gone (unused for longer than the service keeps it) or its login is refused, it asks
 * the service for a new one, and says so (`onAttached` with `fresh`), since results stored
 * before the new queue existed are not on it.
 *
 * When the broker is a cluster, the service names every node (`connection_urls`): the stream
 * connects to the first that answers, starting after the node it lost. A queue whose node is
 * gone is refused (NOT_FOUND), and the stream asks for a new one like for an expired queue.
 *
 * @module
 */
import amqp from "amqplib";
import { getLogger } from "@logtape/logtape";
import { type ResultMessage, unpackMessage } from "./protocol/mod.ts";
import { backoffDelay, sleep } from "./_backoff.ts";
import { brokerAddresses, connectFirst } from "./_broker_addresses.ts";
import type { ResultStreamInfo } from "./_client_task_groups.ts";

const log = getLogger(["funcx", "sdk", "results"]);

/**
 * The endpoint that published a result message straight to the stream (routing key
 * `<endpoint_id>.results.<route>`), or undefined for one the service forwarded.
 */
export function directResultSender(routingKey: string): string | undefined {
  const dot = routingKey.indexOf(".");
  return dot > 0 && routingKey.startsWith(".results.", dot)
    ? routingKey.slice(0, dot).toLowerCase()
    : undefined;
}

/** Options of {@linkcode ResultWatcher}. */
export interface ResultWatcherOptions {
  /** Smallest and largest delay between connection attempts, in ms. @default [250, 10000] */
  backoffMs?: [number, number];
}

/** What a {@linkcode ResultWatcher} reports to its owner. */
export interface ResultWatcherHandlers {
  /**
   * Every result message (possibly twice: the caller dedupes by task id). `from` is the endpoint
   * that published it when it came straight from one (routing key `<endpoint_id>.results.<route>`):
   * take it only for a task sent to that endpoint. Absent: the service forwarded it.
   */
  onResult(r: ResultMessage, from?: string): void;
  /**
   * A new queue is bound to the group's results (`fresh`, not yet `consuming`: results stored
   * before now are not on it), or the consumer runs (again) on the current queue (`consuming`).
   */
  onAttached(event: { fresh: boolean; consuming: boolean }): void;
  /** The consumer stopped (a connection lost, a broker restart); it is reconnecting. */
  onDown(err: Error): void;
}

/** Lifecycle of a {@linkcode ResultWatcher}. */
export type WatcherState = "starting" | "running" | "draining" | "stopped";

/**
 * Consumes one process's result queue of a task group. `FuncXExecutor` runs one; use it directly
 * only to watch a task group without an executor.
 *
 * @example Watch a task group (when `FUNCX_TASK_GROUP_ID` names one)
 * ```ts
 * import { FuncXClient } from "@funcx/sdk";
 * import { ResultWatcher } from "./result_watcher.ts";
 *
 * const group = Deno.env.get("FUNCX_TASK_GROUP_ID");
 * if (group) {
 *   const client = new FuncXClient();
 *   const watcher = new ResultWatcher(() => client.openResultStream(group), {
 *     onResult: (r) => console.log(r.task_id, r.error_details ?? "ok"),
 *     onAttached: () => console.log("attached"),
 *     onDown: (err) => console.warn("reconnecting:", err.message),
 *   });
 *   await new Promise((r) => setTimeout(r, 10_000));
 *   await watcher.close();
 * }
 * ```
 */
export class ResultWatcher {
  readonly #open: () => Promise<ResultStreamInfo>;
  readonly #handlers: ResultWatcherHandlers;
  readonly #backoff: [number, number];
  readonly #stop = new AbortController();
  #info: ResultStreamInfo | undefined;
  #conn: amqp.ChannelModel | undefined;
  /** The broker node to try first: the one after the node last lost. */
  #node = 0;
  #state: WatcherState = "starting";

  /**
   * Starts the stream: `open` asks the service for a queue (`FuncXClient.openResultStream`); it
   * is called again whenever the queue or its login is gone.
   */
  constructor(
    open: () => Promise<ResultStreamInfo>,
    handlers: ResultWatcherHandlers,
    options: ResultWatcherOptions = {},
  ) {
    this.#open = open;
    this.#handlers = handlers;
    this.#backoff = options.backoffMs ?? [250, 10_000];
    void this.#connectLoop();
  }

  /** Current lifecycle state. */
  get state(): WatcherState {
    return this.#state;
  }

  #stopping(): boolean {
    return this.#state === "draining" || this.#state === "stopped";
  }

  async #connectLoop(): Promise<void> {
    const [minMs, maxMs] = this.#backoff;
    for (let attempt = 1; !this.#stopping(); attempt++) {
      try {
        await this.#connect();
        return;
      } catch (err) {
        if (this.#stopping()) return;
        const e = err as Error;
        if (isGone(e)) this.#info = undefined; // ask the service for a new queue or login
        const delay = backoffDelay(attempt, { minMs, maxMs });
        log.warn("Result stream: attempt {attempt} failed ({err}); next in {ms} ms", {
          attempt,
          err: e.message,
          ms: Math.round(delay),
        });
        await sleep(delay, this.#stop.signal);
      }
    }
  }

  async #connect(): Promise<void> {
    if (!this.#info) {
      this.#info = await this.#open();
      // Bound from now on: what is forwarded waits in the queue, consumed or not.
      this.#handlers.onAttached({ fresh: true, consuming: false });
    }
    const { queue } = this.#info;
    const { value: conn, index } = await connectFirst(
      brokerAddresses(this.#info),
      this.#node,
      (url) => amqp.connect(url, { noDelay: true, timeout: 10_000 }),
    );
    this.#node = index;
    if (this.#stopping()) {
      await conn.close().catch(() => {});
      return;
    }
    conn.on("error", (err: Error) => log.debug("Result stream error: {err}", { err }));
    try {
      const ch = await conn.createChannel();
      ch.on("error", () => {});
      await ch.prefetch(1000);
      await ch.consume(queue, (msg) => {
        if (!msg) {
          // The broker cancelled the consumer (its queue's node left the cluster, or the queue
          // was deleted): the close below reconnects, and a queue that is gone is asked for anew.
          void conn.close().catch(() => {});
          return;
        }
        try {
          const m = unpackMessage(
            new Uint8Array(msg.content.buffer, msg.content.byteOffset, msg.content.byteLength),
          );
          const from = directResultSender(msg.fields.routingKey);
          if (m.message_type === "result") this.#handlers.onResult(m.data, from);
          else if (m.message_type === "result_batch") {
            for (const r of m.data.results) this.#handlers.onResult(r, from);
          }
        } catch (err) {
          log.error("Dropping an unreadable result message: {err}", { err: String(err) });
        }
        ch.ack(msg);
      });
    } catch (err) {
      await conn.close().catch(() => {});
      throw err;
    }
    // Closed while the channel was being set up: `close()` found no connection to close, and
    // one left open would keep the process from ever exiting.
    if (this.#stopping()) {
      await conn.close().catch(() => {});
      return;
    }
    this.#conn = conn;
    conn.on("close", (err?: Error) => {
      if (this.#conn !== conn) return;
      this.#conn = undefined;
      if (this.#stopping()) return;
      this.#node = index + 1;
      this.#state = "starting";
      this.#handlers.onDown(err ?? new Error("The broker closed the result stream"));
      void this.#connectLoop();
    });
    this.#state = "running";
    this.#handlers.onAttached({ fresh: false, consuming: true });
  }

  /** Stops consuming; idempotent. Unacked messages stay on the queue, which expires unused. */
  async close(): Promise<void> {
    if (this.#stopping()) return;
    this.#state = "draining";
    this.#stop.abort();
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close().catch(() => {});
    // An attempt still waiting on the service ends by itself and connects nothing.
    this.#state = "stopped";
  }
}

/** Whether a failure means the queue or the login is gone, so a new one must be asked for. */
function isGone(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 404 || code === 403 || /NOT_FOUND|ACCESS_REFUSED/.test(err.message);
}
