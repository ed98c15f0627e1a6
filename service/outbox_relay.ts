/**
 * The outbox relay: the one way a task reaches the broker, in `task_batch` messages (the tasks
 * it has for an endpoint, up to `tasksPerMessage` a message). `POST /v2/submit` writes each task and
 * its packed message in one transaction (the message in the store's outbox, leased to this
 * process for a few seconds) and hands the messages here; the relay publishes them with broker
 * confirms and deletes them from the outbox once confirmed (those confirmed within
 * `deleteDelayMs` of each other in one delete, so that a run of single submits does not cost a
 * commit each: until then the relay holds them, and a crash in between only publishes them again,
 * below). The HTTP answer never waits on the
 * broker, and a broker outage only delays tasks: a message whose publish failed has its lease
 * released, and a sweep (every `sweepMs`, and at once when the broker link is back) claims every
 * unleased or expired message, whoever wrote it. That also picks up what a replica that died (or
 * this process before a restart) left behind. A message may be published twice (a confirm lost
 * with the link, or a lease that ran out); the endpoint runs a task id once.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { OutboxMessage, Store } from "./store.ts";
import type { ServiceBroker } from "./broker.ts";
import { packTaskBatch } from "../sdk/protocol/mod.ts";
import { nowMs, recordPublishHop, TRACING } from "./task_trace.ts";

/** An outbox message handed to the relay, with its task's trace context when it is traced. */
export type RelayMessage = OutboxMessage & { traceparent?: string | undefined };

const log = getLogger(["funcx", "service", "outbox"]);

/** Options of {@linkcode OutboxRelay}. */
export interface OutboxRelayOptions {
  /** Seconds a process holds the messages it wrote or claimed before others may take them. @default 10 */
  leaseS?: number;
  /** Milliseconds between sweeps for messages nobody holds. @default 1000 */
  sweepMs?: number;
  /** Most messages per publish round. @default 1000 */
  maxBatch?: number;
  /**
   * Most tasks in one broker message (`task_batch`). An endpoint's prefetch counts messages, so
   * this also bounds how many tasks it holds. @default 100
   */
  tasksPerMessage?: number;
  /**
   * Milliseconds a confirmed message waits to be deleted with the others confirmed meanwhile
   * (at once when `maxBatch` are waiting). @default 50
   */
  deleteDelayMs?: number;
}

/** `messages` as `task_batch` messages: by endpoint, in order, at most `perMessage` each. */
export function taskBatches(
  messages: readonly OutboxMessage[],
  perMessage: number,
): Array<{ endpointId: string; body: Uint8Array }> {
  const byEndpoint = new Map<string, Uint8Array[]>();
  for (const m of messages) {
    const list = byEndpoint.get(m.endpointId);
    if (list) list.push(m.body);
    else byEndpoint.set(m.endpointId, [m.body]);
  }
  const out: Array<{ endpointId: string; body: Uint8Array }> = [];
  for (const [endpointId, bodies] of byEndpoint) {
    for (let i = 0; i < bodies.length; i += perMessage) {
      out.push({ endpointId, body: packTaskBatch(bodies.slice(i, i + perMessage)) });
    }
  }
  return out;
}

/** Lifecycle of the relay. */
export type RelayState = "running" | "draining" | "stopped";

/** Publishes outbox messages with confirms, then deletes them. */
export class OutboxRelay {
  readonly #store: Store;
  readonly #broker: Pick<ServiceBroker, "publishToEndpoints" | "connected">;
  readonly #leaseS: number;
  readonly #maxBatch: number;
  readonly #perMessage: number;
  readonly #deleteDelayMs: number;
  /** Confirmed task ids not yet deleted from the outbox (still in `#held`). */
  #confirmed: string[] = [];
  #deleteTimer: ReturnType<typeof setTimeout> | undefined;
  #deleting: Promise<void> = Promise.resolve();
  readonly #pending: RelayMessage[] = [];
  /** Task ids in `#pending` or being published, so a sweep does not send them again. */
  readonly #held = new Set<string>();
  readonly #timer: ReturnType<typeof setInterval>;
  #running: Promise<void> | undefined;
  #sweepWanted = true;
  #state: RelayState = "running";

  /** Starts sweeping at once (messages left from before a restart go first). */
  constructor(
    store: Store,
    broker: Pick<ServiceBroker, "publishToEndpoints" | "connected">,
    options: OutboxRelayOptions = {},
  ) {
    this.#store = store;
    this.#broker = broker;
    this.#leaseS = options.leaseS ?? 10;
    this.#maxBatch = options.maxBatch ?? 1000;
    this.#perMessage = options.tasksPerMessage ?? 100;
    this.#deleteDelayMs = options.deleteDelayMs ?? 50;
    this.#timer = setInterval(() => this.sweep(), options.sweepMs ?? 1000);
    this.#kick();
  }

  /** The lease to write new outbox messages with: until when (epoch seconds) this relay has them. */
  leaseUntil(now: number = Date.now() / 1000): number {
    return now + this.#leaseS;
  }

  /** Lifecycle state. */
  get state(): RelayState {
    return this.#state;
  }

  /** Takes messages just written to the outbox (leased to this process) for publishing. */
  push(messages: readonly RelayMessage[]): void {
    if (this.#state !== "running") return; // the lease runs out and a sweep takes them
    if (!this.#broker.connected) {
      // Nothing to hold them for: let the sweep after the reconnect take them.
      void this.#store.releaseOutbox(messages.map((m) => m.taskId)).catch(() => {});
      return;
    }
    for (const m of messages) {
      if (this.#held.has(m.taskId)) continue;
      this.#held.add(m.taskId);
      this.#pending.push(m);
    }
    this.#kick();
  }

  /** Looks for messages nobody holds (after a broker outage, a restart, a dead replica). */
  sweep(): void {
    this.#sweepWanted = true;
    this.#kick();
  }

  #kick(): void {
    if (this.#running || this.#state !== "running") return;
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
      if (this.#pending.length > 0 && this.#broker.connected) this.#kick();
    });
  }

  async #loop(): Promise<void> {
    while (this.#state === "running" && this.#broker.connected) {
      let batch = this.#pending.splice(0, this.#maxBatch);
      if (batch.length === 0 && this.#sweepWanted) {
        this.#sweepWanted = false;
        try {
          const now = Date.now() / 1000;
          batch = (await this.#store.claimOutbox(now, this.leaseUntil(now), this.#maxBatch))
            .filter((m) => !this.#held.has(m.taskId));
        } catch (err) {
          log.error("Cannot read the outbox: {err}", { err: String(err) });
          return;
        }
        for (const m of batch) this.#held.add(m.taskId);
        // A full claim may have left more behind.
        if (batch.length >= this.#maxBatch) this.#sweepWanted = true;
        if (batch.length > 0) log.info("Relaying {n} queued tasks", { n: batch.length });
      }
      if (batch.length === 0) return;
      await this.#publish(batch);
    }
  }

  async #publish(batch: RelayMessage[]): Promise<void> {
    const ids = batch.map((m) => m.taskId);
    const started = TRACING ? nowMs() : 0;
    try {
      await this.#broker.publishToEndpoints(taskBatches(batch, this.#perMessage));
      if (TRACING) { for (const m of batch) recordPublishHop(m.traceparent, started, m.taskId); }
    } catch (err) {
      log.warn("Cannot publish {n} tasks now ({err}); they wait in the outbox", {
        n: batch.length,
        err: String(err),
      });
      // Back to the outbox for the next sweep; what else is pending goes there too.
      const rest = this.#pending.splice(0);
      const all = [...ids, ...rest.map((m) => m.taskId)];
      for (const id of all) this.#held.delete(id);
      await this.#store.releaseOutbox(all).catch((e) =>
        log.error("Cannot release outbox leases (they run out by themselves): {err}", { err: e })
      );
      this.#sweepWanted = true;
      return;
    }
    this.#confirmed.push(...ids);
    if (this.#confirmed.length >= this.#maxBatch) this.#deleteConfirmed();
    else this.#deleteTimer ??= setTimeout(() => this.#deleteConfirmed(), this.#deleteDelayMs);
  }

  /** Deletes the confirmed messages from the outbox in one go, after the last such delete. */
  #deleteConfirmed(): Promise<void> {
    clearTimeout(this.#deleteTimer);
    this.#deleteTimer = undefined;
    const ids = this.#confirmed;
    if (ids.length === 0) return this.#deleting;
    this.#confirmed = [];
    this.#deleting = this.#deleting.then(async () => {
      try {
        await this.#store.deleteOutbox(ids);
      } catch (err) {
        // Published but still in the outbox: a later sweep sends it again, and it runs once.
        log.error("Cannot delete {n} sent tasks from the outbox: {err}", {
          n: ids.length,
          err: String(err),
        });
      } finally {
        for (const id of ids) this.#held.delete(id);
      }
    });
    return this.#deleting;
  }

  /** Stops relaying; messages not yet confirmed stay in the outbox for the next process. */
  async close(): Promise<void> {
    if (this.#state !== "running") return;
    this.#state = "draining";
    clearInterval(this.#timer);
    await this.#running;
    await this.#deleteConfirmed();
    this.#state = "stopped";
  }
}
