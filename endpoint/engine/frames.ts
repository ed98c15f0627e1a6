/**
 * Length-prefixed frames over a byte stream, shared by the two typed protocols of the engine:
 * interchange ↔ manager (TCP) and manager ↔ worker (a Unix socket, or stdin/stdout). A frame is a 4-byte
 * big-endian length, then that many bytes of CBOR. Each conversation starts with a handshake that
 * carries the protocol version.
 *
 * @module
 */
// The protocol's own CBOR codec: the same bytes as cbor2, several times faster on this hot path.
import { decodeCbor, encodeCbor } from "../../sdk/protocol/mod.ts";
import type { ResultMessage } from "../../sdk/protocol/mod.ts";

/**
 * Version of the manager ↔ worker protocol; a worker that says another one is not used.
 * 2: `skip` / `skipped`, for tasks sent ahead of the one a worker runs.
 */
export const WORKER_PROTOCOL_VERSION = 2;

/**
 * The id of the task a manager sends a worker right after its handshake (an ordinary task to the
 * worker); the worker counts as ready once its result is back. The worker warms its task path up
 * by itself before it says hello (`worker_main.ts`), but not what a task sent over its real
 * channel takes: the socket's reads and writes, timers and the event loop around them. Measured
 * with 128 workers on 2 cores (`bench/waves.ts`), the first wave of real tasks reached all of them
 * in 72–78 ms without it and 40–48 ms with it, for 0.1 s more start-up.
 */
export const WARM_UP_TASK_ID = "funcx-warm-up";

/**
 * Environment variable with the path of the Unix socket a worker talks to its manager on, in
 * place of stdin/stdout; unset for a worker that uses those.
 */
export const WORKER_SOCKET_ENV = "FUNCX_WORKER_SOCKET";

/**
 * Environment variables set for a worker process alone, by name, comma-separated: the worker
 * removes them (and this one) from its environment as it starts, so that a task's own programs
 * do not inherit them.
 */
export const WORKER_ONLY_ENV = "FUNCX_WORKER_ONLY_ENV";

/** What a manager sends a worker. */
export type ToWorker =
  | { type: "task"; task_id: string; buffer: string }
  /** Do not run this task if it has not started: answered by `skipped` either way. */
  | { type: "skip"; task_id: string }
  | { type: "shutdown" };

/** What a worker sends its manager. */
export type FromWorker =
  | { type: "hello"; protocol: number; pid: number }
  | { type: "result"; result: ResultMessage }
  /** The answer to `skip`: `skipped` false when the task had started (its result comes). */
  | { type: "skipped"; task_id: string; skipped: boolean };

const MAX_FRAME = 256 * 1024 * 1024;

/** Encodes one message as a frame. */
export function encodeFrame(message: unknown): Uint8Array {
  const body = encodeCbor(message);
  const out = new Uint8Array(4 + body.byteLength);
  new DataView(out.buffer).setUint32(0, body.byteLength);
  out.set(body, 4);
  return out;
}

/** Something frames can be read from: a byte stream, or a resource with `read` (stdin, a conn). */
export type FrameSource = ReadableStream<Uint8Array> | {
  read(p: Uint8Array): Promise<number | null>;
};

const READ_SIZE = 64 * 1024;

async function* chunksOf(source: FrameSource): AsyncGenerator<Uint8Array> {
  // Not `instanceof ReadableStream`: the global's first use loads Deno's streams implementation
  // (some 2 MiB and a few ms), which a worker reading its socket never needs.
  if (!("read" in source)) {
    yield* source;
    return;
  }
  // Read straight into one buffer: no stream machinery (queues, promises, BYOB requests) per
  // read; what was read is copied out, as the reader may keep it past the next read.
  const buf = new Uint8Array(READ_SIZE);
  for (;;) {
    const n = await source.read(buf);
    if (n === null) return;
    yield buf.slice(0, n);
  }
}

/** Reads frames from a byte stream (or a readable resource) until it ends. */
export async function* readFrames<T>(source: FrameSource): AsyncGenerator<T> {
  // Bytes not yet framed: a list of chunks, joined only once a whole frame is there, so a large
  // frame arriving in many chunks is copied once rather than once per chunk.
  let parts: Uint8Array[] = [];
  let have = 0;
  let need = 4; // bytes before the next step: a length prefix, then a frame
  let frameLen = -1;
  for await (const chunk of chunksOf(source)) {
    parts.push(chunk);
    have += chunk.byteLength;
    if (have < need) continue;
    let buf = parts.length === 1 ? parts[0]! : concat(parts, have);
    let offset = 0;
    for (;;) {
      if (frameLen < 0) {
        if (buf.byteLength - offset < 4) break;
        frameLen = new DataView(buf.buffer, buf.byteOffset + offset, 4).getUint32(0);
        if (frameLen > MAX_FRAME) {
          throw new Error(`Frame of ${frameLen} bytes is over the ${MAX_FRAME} limit`);
        }
        offset += 4;
      }
      if (buf.byteLength - offset < frameLen) break;
      const body = buf.subarray(offset, offset + frameLen);
      offset += frameLen;
      frameLen = -1;
      yield decodeCbor(body) as T;
    }
    buf = buf.subarray(offset);
    parts = buf.byteLength === 0 ? [] : [buf];
    have = buf.byteLength;
    need = frameLen < 0 ? 4 : frameLen;
  }
}

/**
 * A source that reads `chunks` as one byte stream, as a socket is read (not a `ReadableStream`,
 * whose first use loads Deno's streams code).
 */
export function memorySource(chunks: Uint8Array[]): FrameSource {
  const bytes = concat(chunks, chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  return {
    read: (p) => {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.byteLength, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Where frames can be written: a byte stream, or a resource with `write` (a conn). */
export type FrameSink = WritableStream<Uint8Array> | {
  write(p: Uint8Array): Promise<number>;
};

/**
 * Writes frames to a stream, coalescing the frames sent in one tick into one write so a burst of
 * tasks or results costs one syscall, not one per frame. Errors are reported once to `onError`.
 * A resource sink (a `Deno.Conn`) is written to directly, without stream machinery, and is left
 * open by {@linkcode FrameWriter.close}: its owner closes it.
 */
export class FrameWriter<T> {
  readonly #write: (bytes: Uint8Array) => Promise<void>;
  readonly #close: () => Promise<void>;
  readonly #onError: (err: unknown) => void;
  #pending: Uint8Array[] = [];
  #flushing: Promise<void> | undefined;
  #failed = false;
  #closed = false;

  /** Wraps `sink`; `onError` hears about the first failed write. */
  constructor(sink: FrameSink, onError: (err: unknown) => void = () => {}) {
    if (sink instanceof WritableStream) {
      const writer = sink.getWriter();
      this.#write = (bytes) => writer.write(bytes);
      this.#close = () => writer.close().catch(() => {});
    } else {
      this.#write = async (bytes) => {
        let at = 0;
        while (at < bytes.byteLength) at += await sink.write(bytes.subarray(at));
      };
      this.#close = () => Promise.resolve();
    }
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
        await this.#write(bytes);
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
    await this.#close();
  }
}
