/**
 * Fewer acks for the task queue. A confirmed result batch releases hundreds of tasks in one turn;
 * their acks leave together at the end of it, as one `basic.ack` with `multiple` for those below
 * the oldest delivery still unsettled, and single acks for the rest (settled out of order). amqplib
 * writes each frame to the socket by itself, so this saves a syscall per task in the daemon and a
 * frame per task at the broker. Nacks and rejects are sent by the caller at once, so they always
 * precede a `multiple` ack that covers their delivery tag.
 *
 * @module
 */

/** What the coalescer needs of a delivered message (amqplib's `ConsumeMessage` has it). */
export interface Delivery {
  /** The delivery's fields. */
  fields: {
    /** Tag of the delivery, increasing on a channel. */
    deliveryTag: number;
  };
}

/**
 * Turns the acks asked for in one turn into as few frames as is safe. A `multiple` ack settles
 * every unacked delivery up to its tag, so it is used only below the oldest delivery not yet
 * settled; deliveries are tracked from the moment they arrive.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AckCoalescer } from "./ack_coalescer.ts";
 * const sent: string[] = [];
 * const acks = new AckCoalescer<{ fields: { deliveryTag: number } }>((m, multiple) =>
 *   sent.push(`${m.fields.deliveryTag}${multiple ? "+" : ""}`)
 * );
 * const [a, b, c] = [1, 2, 3].map((deliveryTag) => ({ fields: { deliveryTag } }));
 * for (const m of [a!, b!, c!]) acks.delivered(m);
 * acks.ack(a!);
 * acks.ack(c!);
 * acks.flush();
 * assert.equal(sent.join(), "3,1+"); // 2 still runs: 3 goes alone
 * ```
 */
export class AckCoalescer<M extends Delivery> {
  readonly #send: (msg: M, multiple: boolean) => void;
  /**
   * Tags delivered and not yet settled, oldest first: tags grow on a channel and a Set iterates
   * in insertion order, so its first value is the oldest. At most `prefetch` of them.
   */
  readonly #unsettled = new Set<number>();
  #pending: M[] = [];
  #scheduled: ReturnType<typeof setImmediate> | undefined;

  /** `send` writes one ack. */
  constructor(send: (msg: M, multiple: boolean) => void) {
    this.#send = send;
  }

  /** Records a delivery; call it for every message, before it can be settled. */
  delivered(msg: M): void {
    this.#unsettled.add(msg.fields.deliveryTag);
  }

  /** Records a delivery settled by a nack or reject (which the caller sends at once). */
  settled(msg: M): void {
    this.#unsettled.delete(msg.fields.deliveryTag);
  }

  /** Acks a delivery at the end of this turn. */
  ack(msg: M): void {
    this.#pending.push(msg);
    // setImmediate, not a microtask: the acks of one confirmed batch arrive over several
    // microtask hops; all of them are in by the time immediates run.
    this.#scheduled ??= setImmediate(() => this.flush());
  }

  /** Sends the acks asked for so far. */
  flush(): void {
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    const pending = this.#pending;
    if (pending.length === 0) return;
    this.#pending = [];
    for (const msg of pending) this.#unsettled.delete(msg.fields.deliveryTag);
    const oldest = this.#unsettled.values().next().value ?? Infinity;
    let upTo: M | undefined;
    for (const msg of pending) {
      const tag = msg.fields.deliveryTag;
      if (tag < oldest) {
        if (!upTo || tag > upTo.fields.deliveryTag) upTo = msg;
      } else {
        this.#send(msg, false); // an older delivery is still running
      }
    }
    if (upTo) this.#send(upTo, true);
  }
}
