/**
 * Results that finish together leave together: the batcher gathers results (up to a count and
 * size limit) into one `result_batch` message (each result encoded once, the envelope written
 * around them), so the broker carries and confirms one message
 * per batch instead of one per task. When nothing is on the wire a batch leaves at the end of the
 * current turn; while one awaits its confirm the next one grows. Each caller's promise settles
 * with its batch's publisher confirm.
 *
 * @module
 */
import { packResultBatch } from "../sdk/protocol/mod.ts";

/** Options of {@linkcode ResultBatcher}. */
export interface ResultBatcherOptions {
  /** Most results in one message. @default 500 */
  maxResults?: number;
  /** Most encoded result bytes in one message. @default 1 MiB */
  maxBytes?: number;
  /** Called when the last batch on the wire is confirmed (or refused) and nothing waits. */
  onIdle?: () => void;
}

interface Waiting {
  encoded: Uint8Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Gathers results into batch messages for one broker session. */
export class ResultBatcher {
  readonly #publish: (body: Uint8Array) => Promise<void>;
  readonly #maxResults: number;
  readonly #maxBytes: number;
  #waiting: Waiting[] = [];
  #bytes = 0;
  #timer: ReturnType<typeof setImmediate> | undefined;
  #publishing = 0;
  readonly #onIdle: (() => void) | undefined;

  /** `publish` sends one packed message and resolves on its broker confirm. */
  constructor(publish: (body: Uint8Array) => Promise<void>, options: ResultBatcherOptions = {}) {
    this.#publish = publish;
    this.#maxResults = options.maxResults ?? 500;
    this.#maxBytes = options.maxBytes ?? 1024 * 1024;
    this.#onIdle = options.onIdle;
  }

  /**
   * Queues a result, as its CBOR from `encodeResult`; resolves once the broker confirmed the
   * message that carried it.
   */
  add(encoded: Uint8Array): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    // A result bigger than a whole batch goes alone, after what is already waiting.
    if (this.#bytes + encoded.byteLength > this.#maxBytes) this.flush();
    this.#waiting.push({ encoded, resolve, reject });
    this.#bytes += encoded.byteLength;
    if (this.#waiting.length >= this.#maxResults || this.#bytes >= this.#maxBytes) {
      this.flush();
    } else if (this.#publishing === 0) {
      // Nothing on the wire: send at the end of this turn (setImmediate, not setTimeout(0),
      // which waits a couple of milliseconds in Deno). Otherwise results wait for the batch on
      // the wire to be confirmed, so batches grow with the load and latency stays low when idle.
      this.#timer ??= setImmediate(() => this.flush());
    }
    return promise;
  }

  /** Sends what is waiting now. */
  flush(): void {
    if (this.#timer) clearImmediate(this.#timer);
    this.#timer = undefined;
    const batch = this.#waiting;
    if (batch.length === 0) return;
    this.#waiting = [];
    this.#bytes = 0;
    // The results were encoded one by one; the batch's envelope is written around them.
    const body = packResultBatch(batch.map((w) => w.encoded));
    this.#publishing++;
    this.#publish(body).then(
      () => batch.forEach((w) => w.resolve()),
      (err) => batch.forEach((w) => w.reject(err)),
    ).finally(() => {
      if (--this.#publishing > 0) return;
      if (this.#waiting.length > 0) this.flush();
      else this.#onIdle?.();
    });
  }
}
