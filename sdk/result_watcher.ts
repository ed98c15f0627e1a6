/**
 * The executor's result stream: one AMQP consumer on the user's queue for one task group
 * (`<queue_prefix><task_group_id>`), with the user's own broker login. It reconnects with
 * jittered backoff; when it finally gives up, it says so once and the executor fails every open
 * future. It is closed whenever nothing is outstanding, so a script can exit.
 *
 * @module
 */
import amqp from "amqplib";
import { getLogger } from "@logtape/logtape";
import { type ResultMessage, unpackMessage } from "./protocol/mod.ts";

const log = getLogger(["funcx", "sdk", "results"]);

/** Options of {@linkcode ResultWatcher}. */
export interface ResultWatcherOptions {
  /** Connection attempts in a row before giving up. @default 5 */
  maxAttempts?: number;
  /** Smallest and largest delay between attempts, in ms. @default [500, 10000] */
  backoffMs?: [number, number];
}

/** Lifecycle of a {@linkcode ResultWatcher}. */
export type WatcherState = "starting" | "running" | "draining" | "stopped";

/**
 * Consumes one task group's result queue. `FuncXExecutor` runs one; use it directly only to
 * watch a task group without an executor.
 *
 * @example
 * ```ts ignore
 * import { FuncXClient, ResultWatcher } from "@funcx/sdk";
 * const client = new FuncXClient();
 * const watcher = new ResultWatcher(client.getResultAmqpUrl(), Deno.env.get("GROUP")!, {
 *   onResult: (r) => console.log(r.task_id, r.error_details ?? "ok"),
 *   onGiveUp: (err) => console.error(err),
 * });
 * await new Promise((r) => setTimeout(r, 10_000));
 * await watcher.close();
 * ```
 */
export class ResultWatcher {
  readonly #queue: Promise<string>;
  readonly #onResult: (r: ResultMessage) => void;
  readonly #onGiveUp: (err: Error) => void;
  readonly #maxAttempts: number;
  readonly #backoff: [number, number];
  #conn: amqp.ChannelModel | undefined;
  #state: WatcherState = "starting";
  #url: string | undefined;

  /**
   * Starts consuming `taskGroupId`'s queue with the login `resultUrl` gives (from
   * `FuncXClient.getResultAmqpUrl`); `onResult` gets every result message (possibly twice:
   * the caller dedupes by task id), `onGiveUp` is called once if the stream is lost for good.
   */
  constructor(
    resultUrl: Promise<{ connection_url: string; queue_prefix: string }>,
    taskGroupId: string,
    handlers: { onResult: (r: ResultMessage) => void; onGiveUp: (err: Error) => void },
    options: ResultWatcherOptions = {},
  ) {
    this.#onResult = handlers.onResult;
    this.#onGiveUp = handlers.onGiveUp;
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#backoff = options.backoffMs ?? [500, 10_000];
    this.#queue = resultUrl.then((info) => {
      this.#url = info.connection_url;
      return `${info.queue_prefix}${taskGroupId}`;
    });
    this.#queue.catch(() => {});
    void this.#connectLoop();
  }

  /** Current lifecycle state. */
  get state(): WatcherState {
    return this.#state;
  }

  async #connectLoop(): Promise<void> {
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      if (this.#state === "draining" || this.#state === "stopped") return;
      try {
        await this.#connect();
        return;
      } catch (err) {
        lastError = err as Error;
        log.warn("Result stream connection {attempt} failed: {err}", {
          attempt,
          err: String(err),
        });
        if (attempt === this.#maxAttempts) break;
        const [lo, hi] = this.#backoff;
        const delay = Math.min(hi, lo * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    if (this.#state === "draining" || this.#state === "stopped") return;
    this.#state = "stopped";
    this.#onGiveUp(
      new Error(
        `Result stream lost after ${this.#maxAttempts} attempts: ${
          lastError?.message ?? "unknown"
        }`,
        { cause: lastError },
      ),
    );
  }

  async #connect(): Promise<void> {
    const queue = await this.#queue;
    const conn = await amqp.connect(this.#url!, { noDelay: true });
    if (this.#state === "draining" || this.#state === "stopped") {
      await conn.close().catch(() => {});
      return;
    }
    this.#conn = conn;
    conn.on("error", (err: Error) => log.debug("Result stream error: {err}", { err }));
    conn.on("close", () => {
      this.#conn = undefined;
      if (this.#state === "running") {
        this.#state = "starting";
        void this.#connectLoop();
      }
    });
    const ch = await conn.createChannel();
    await ch.prefetch(1000);
    await ch.consume(queue, (msg) => {
      if (!msg) return;
      try {
        const m = unpackMessage(
          new Uint8Array(msg.content.buffer, msg.content.byteOffset, msg.content.byteLength),
        );
        if (m.message_type === "result") this.#onResult(m.data);
        else if (m.message_type === "result_batch") {
          for (const r of m.data.results) this.#onResult(r);
        }
      } catch (err) {
        log.error("Dropping an unreadable result message: {err}", { err: String(err) });
      }
      ch.ack(msg);
    });
    this.#state = "running";
  }

  /** Stops consuming; idempotent. Unacked messages go back to the queue. */
  async close(): Promise<void> {
    if (this.#state === "draining" || this.#state === "stopped") return;
    this.#state = "draining";
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close().catch(() => {});
    this.#state = "stopped";
  }
}
