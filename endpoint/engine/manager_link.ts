/**
 * The transport between the interchange and a manager, apart from what they say over it
 * ({@link ./manager_protocol.ts}): a {@linkcode Link} sends messages one way and reads them the
 * other. A manager on another node (a batch block) talks over TCP frames ({@linkcode tcpLink});
 * a manager in the daemon's own process (a local block, `engine.local_manager: in_process`) over
 * an in-memory pair ({@linkcode memoryLinks}): no socket, no encoding, no extra process, and the
 * same messages in the same order.
 *
 * @module
 */
import { FrameWriter, readFrames } from "./frames.ts";

/** One side of a connection: sends `Out`, reads `In`. */
export interface Link<Out, In> {
  /** The messages from the other side, in order; ends when the link does. */
  readonly messages: AsyncGenerator<In, void, undefined>;
  /** Queues a message for the other side (dropped once the link has ended). */
  send(message: Out): void;
  /** Waits until what was sent has left this side. */
  drain(): Promise<void>;
  /** Delivers what was sent, then ends the link both ways; idempotent. */
  close(): Promise<void>;
  /** Ends the link both ways at once: messages not yet read are dropped; idempotent. */
  abort(): void;
}

/** A link over a TCP connection, in {@link ./frames.ts} frames. */
export function tcpLink<Out, In>(conn: Deno.Conn): Link<Out, In> {
  const writer = new FrameWriter<Out>(conn);
  const abort = () => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  return {
    messages: readFrames<In>(conn),
    send: (message) => writer.send(message),
    drain: () => writer.drain(),
    close: async () => {
      await writer.close();
      abort();
    },
    abort,
  };
}

/** One direction of an in-memory pair: a queue with at most one waiting reader. */
class Channel<T> {
  #items: T[] = [];
  #head = 0;
  #waiter: ((r: IteratorResult<T, void>) => void) | undefined;
  #ended = false;

  push(item: T): void {
    if (this.#ended) return;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  /** Ends the channel; what is queued is still read unless `drop`. */
  end(drop: boolean): void {
    this.#ended = true;
    if (drop) {
      this.#items = [];
      this.#head = 0;
    }
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T, void>> | IteratorResult<T, void> {
    if (this.#head < this.#items.length) {
      const value = this.#items[this.#head++]!;
      if (this.#head === this.#items.length) {
        this.#items = [];
        this.#head = 0;
      }
      return { value, done: false };
    }
    if (this.#ended) return { value: undefined, done: true };
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      const r = await this.next();
      if (r.done) return;
      yield r.value;
    }
  }
}

/**
 * Two linked in-memory sides: what one sends, the other reads, as the same objects (neither side
 * may change a message after sending it). Ending either side ends both.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryLinks } from "./manager_link.ts";
 * const [a, b] = memoryLinks<string, number>();
 * a.send("hello");
 * b.send(42);
 * assert.equal((await b.messages.next()).value, "hello");
 * await a.close();
 * assert.deepEqual(await a.messages.next(), { value: 42, done: false });
 * assert.equal((await b.messages.next()).done, true);
 * ```
 */
export function memoryLinks<A, B>(): [Link<A, B>, Link<B, A>] {
  const toB = new Channel<A>();
  const toA = new Channel<B>();
  const side = <Out, In>(out: Channel<Out>, inbox: Channel<In>): Link<Out, In> => {
    const end = (drop: boolean) => {
      out.end(false);
      inbox.end(drop);
    };
    return {
      messages: inbox[Symbol.asyncIterator](),
      send: (message) => out.push(message),
      drain: () => Promise.resolve(),
      close: () => {
        end(false);
        return Promise.resolve();
      },
      abort: () => end(true),
    };
  };
  return [side(toB, toA), side(toA, toB)];
}
