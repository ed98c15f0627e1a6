/**
 * Length-prefixed frames over a byte stream, shared by the two typed protocols of the engine:
 * interchange ↔ manager (TCP) and manager ↔ worker (stdin/stdout). A frame is a 4-byte
 * big-endian length, then that many bytes of CBOR. Each conversation starts with a handshake that
 * carries the protocol version.
 *
 * @module
 */
// The protocol's own CBOR codec: the same bytes as cbor2, several times faster on this hot path.
import { decodeCbor, encodeCbor } from "../../sdk/protocol/mod.ts";
import type { ResultMessage } from "../../sdk/protocol/mod.ts";

/** Version of the manager ↔ worker protocol; a worker that says another one is not used. */
export const WORKER_PROTOCOL_VERSION = 1;

/** What a manager sends a worker. */
export type ToWorker =
  | { type: "task"; task_id: string; buffer: string }
  | { type: "shutdown" };

/** What a worker sends its manager. */
export type FromWorker =
  | { type: "hello"; protocol: number; pid: number }
  | { type: "result"; result: ResultMessage };

const MAX_FRAME = 256 * 1024 * 1024;

/** Encodes one message as a frame. */
export function encodeFrame(message: unknown): Uint8Array {
  const body = encodeCbor(message);
  const out = new Uint8Array(4 + body.byteLength);
  new DataView(out.buffer).setUint32(0, body.byteLength);
  out.set(body, 4);
  return out;
}

/** Reads frames from a byte stream until it ends. */
export async function* readFrames<T>(stream: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  let buf: Uint8Array = new Uint8Array(0);
  for await (const chunk of stream) {
    if (buf.byteLength === 0) {
      buf = chunk;
    } else {
      const next = new Uint8Array(buf.byteLength + chunk.byteLength);
      next.set(buf);
      next.set(chunk, buf.byteLength);
      buf = next;
    }
    let offset = 0;
    while (buf.byteLength - offset >= 4) {
      const len = new DataView(buf.buffer, buf.byteOffset + offset, 4).getUint32(0);
      if (len > MAX_FRAME) throw new Error(`Frame of ${len} bytes is over the ${MAX_FRAME} limit`);
      if (buf.byteLength - offset - 4 < len) break;
      yield decodeCbor(buf.subarray(offset + 4, offset + 4 + len)) as T;
      offset += 4 + len;
    }
    buf = offset === buf.byteLength ? new Uint8Array(0) : buf.slice(offset);
  }
}

/**
 * Writes frames to a stream, coalescing the frames sent in one tick into one write so a burst of
 * tasks or results costs one syscall, not one per frame. Errors are reported once to `onError`.
 */
export class FrameWriter<T> {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #onError: (err: unknown) => void;
  #pending: Uint8Array[] = [];
  #flushing: Promise<void> | undefined;
  #failed = false;
  #closed = false;

  /** Wraps `stream`; `onError` hears about the first failed write. */
  constructor(stream: WritableStream<Uint8Array>, onError: (err: unknown) => void = () => {}) {
    this.#writer = stream.getWriter();
    this.#onError = onError;
  }

  /** Queues a message; it is written at the end of this tick. */
  send(message: T): void {
    if (this.#failed || this.#closed) return;
    this.#pending.push(encodeFrame(message));
    this.#flushing ??= Promise.resolve().then(() => this.#flush());
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0 && !this.#failed) {
      const frames = this.#pending;
      this.#pending = [];
      let bytes: Uint8Array;
      if (frames.length === 1) {
        bytes = frames[0]!;
      } else {
        bytes = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
        let at = 0;
        for (const f of frames) {
          bytes.set(f, at);
          at += f.byteLength;
        }
      }
      try {
        await this.#writer.write(bytes);
      } catch (err) {
        this.#failed = true;
        this.#onError(err);
      }
    }
    this.#flushing = undefined;
  }

  /** Waits for queued frames to be written. */
  async drain(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  /** Writes what is queued, then closes the stream; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.drain();
    this.#closed = true;
    await this.#writer.close().catch(() => {});
  }
}
