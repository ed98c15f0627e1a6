/**
 * Which task messages the endpoint holds unacked, and when each is acked: a task's result is
 * appended to the {@linkcode ResultJournal} and published (batched, with publisher confirms) at
 * the same time, and the message is acked as soon as either makes the result safe, or returned to
 * the queue when neither did. Tasks whose result is safe are remembered, so that a redelivery of
 * one (its ack was lost with the connection) is acked, not run again.
 *
 * @module
 */
import type amqp from "amqplib";
import { getLogger } from "@logtape/logtape";
import { encodeResult, packResultBatch, type ResultMessage } from "../sdk/protocol/mod.ts";
import type { BrokerLink } from "./broker_link.ts";
import type { BrokerSession } from "./broker_session.ts";
import { ResultBatcher } from "./result_batcher.ts";
import type { ResultJournal } from "./result_journal.ts";

const log = getLogger(["funcx", "endpoint"]);

/**
 * One message from the task queue (a `task`, or a `task_batch` of many) and how many of its tasks
 * are not yet safe: it is acked when the last one is, or returned to the queue if any could not
 * be made safe (the ones that were are skipped when it comes back).
 */
export interface Delivery {
  msg: amqp.ConsumeMessage;
  session: BrokerSession;
  open: number;
  requeue: boolean;
}

/** The counters a {@linkcode DeliveryLedger} keeps. */
export interface DeliveryCounts {
  /** Results confirmed by the broker. */
  resultsPublished: number;
  /** Results kept on disk, not confirmed. */
  resultsStored: number;
}

/**
 * Task ids remembered per unit of `prefetch`. A finished task comes back only when its ack was
 * lost with the connection, and at most `prefetch` deliveries are unacked at a time, so a few
 * times that covers several losses in a row; more would only keep memory (~90 bytes an id).
 */
const RECENT_PER_PREFETCH = 4;
const RECENT_MIN = 10_000;

/** How long a route the broker refused goes unused (its stream asks for a new queue meanwhile). */
const REFUSED_ROUTE_MS = 10_000;

/**
 * A task's `result_route` that may go into a routing key (one of at most 255 bytes, after
 * `<endpoint_id>.results.`); another is ignored and the result goes without a route.
 */
const ROUTE_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** The unacked deliveries of an endpoint and the tasks that ran here lately. */
export class DeliveryLedger {
  readonly #journal: ResultJournal;
  readonly #link: BrokerLink;
  readonly #counts: DeliveryCounts;
  readonly #inFlight = new Map<string, Delivery>();
  /** Routes the broker refused lately, until when (ms since the epoch) they go unused. */
  readonly #refusedRoutes = new Map<string, number>();
  /** Result batchers of each session, by route ("" for results without one). */
  readonly #batchers = new WeakMap<BrokerSession, Map<string, ResultBatcher>>();
  /** Tasks whose result is confirmed or on disk: a redelivery of one is acked, not rerun. */
  readonly #recent = new Set<string>();
  readonly #recentLimit: number;

  /** A ledger for `prefetch` tasks at a time, counting into `counts`. */
  constructor(options: {
    prefetch: number;
    journal: ResultJournal;
    link: BrokerLink;
    counts: DeliveryCounts;
  }) {
    this.#journal = options.journal;
    this.#link = options.link;
    this.#counts = options.counts;
    this.#recentLimit = Math.max(RECENT_MIN, RECENT_PER_PREFETCH * options.prefetch);
  }

  /** Tasks taken and not yet settled. */
  get size(): number {
    return this.#inFlight.size;
  }

  /** The delivery a running task came with, if it is running. */
  running(taskId: string): Delivery | undefined {
    return this.#inFlight.get(taskId);
  }

  /** Whether the task's result is safe already (confirmed or journaled). */
  ranHere(taskId: string): boolean {
    return this.#recent.has(taskId) || this.#journal.has(taskId);
  }

  /** Records that the task runs now, for `delivery` (which its settling acks). */
  track(taskId: string, delivery: Delivery): void {
    this.#inFlight.set(taskId, delivery);
  }

  /**
   * Journals a result and publishes it at the same time; acks the task as soon as either makes
   * the result safe (synced or confirmed), and requeues it only when neither did. `route` is the
   * task's `result_route`: the result is published under it, straight to its group's streams.
   */
  async deliver(taskId: string, result: ResultMessage, route?: string): Promise<void> {
    let released = false;
    const safe = () => {
      if (released) return;
      released = true;
      this.release(taskId, true);
    };
    let durable: Promise<boolean>;
    let encoded: Uint8Array | undefined;
    try {
      // Encoded once: the journal keeps it as a message of one, the batch carries the same bytes.
      encoded = encodeResult(result);
      durable = this.#journal.append(taskId, packResultBatch([encoded]))
        .then(() => (safe(), true), (err) => {
          log.error("Cannot journal the result of {id}: {err}", { id: taskId, err: String(err) });
          return false;
        });
    } catch (err) {
      log.error("Cannot pack the result of {id}: {err}", { id: taskId, err: String(err) });
      durable = Promise.resolve(false);
    }
    const session = this.#link.session;
    const confirmed = session && encoded
      ? this.#publish(
        session,
        encoded,
        result.data.length <= session.routedResultLimit ? route : undefined,
      ).then(() => {
        this.#journal.confirm(taskId);
        this.#counts.resultsPublished++;
        safe();
        return true;
      }, (err) => {
        log.warn("Result of {id} not confirmed; it waits in the journal: {err}", {
          id: taskId,
          err: String(err),
        });
        session.lost(err as Error);
        return false;
      })
      : Promise.resolve(false);
    const [isDurable, isConfirmed] = await Promise.all([durable, confirmed]);
    if (isConfirmed) return;
    if (!isDurable) {
      log.error("The result of {id} is neither confirmed nor on disk; the task will run again", {
        id: taskId,
      });
      this.release(taskId, false);
      return;
    }
    this.#counts.resultsStored++;
    // Reconnected while we wrote it: send it now rather than at the next reconnect.
    if (this.#link.session && this.#link.session !== session) this.#link.flushSoon();
  }

  /** Ends a task's stay: ack its delivery when its result is safe, else return it to the queue. */
  release(taskId: string, safe: boolean): void {
    const delivery = this.#inFlight.get(taskId);
    this.#inFlight.delete(taskId);
    if (safe) this.remember(taskId);
    if (delivery) this.settle(delivery, safe);
  }

  /** Counts one task of `delivery` as settled; the last one acks or returns the message. */
  settle(delivery: Delivery, safe: boolean): void {
    if (!safe) delivery.requeue = true;
    if (--delivery.open > 0) return;
    // A lost session drops it (the broker requeued the message already). A session still opening
    // takes it: its first deliveries (redelivered tasks that ran here) settle before the link
    // makes it current, and one left unacked would hold a prefetch slot, and with a full window
    // every later task, for good.
    if (delivery.requeue) delivery.session.nack(delivery.msg);
    else delivery.session.ack(delivery.msg);
  }

  /** Remembers that the task's result is safe, forgetting the oldest beyond the limit. */
  remember(taskId: string): void {
    this.#recent.add(taskId);
    if (this.#recent.size > this.#recentLimit) {
      const oldest = this.#recent.values().next().value;
      if (oldest !== undefined) this.#recent.delete(oldest);
    }
  }

  /**
   * Publishes a batch under `route`. The broker refuses it (a nack) when one of the queues it
   * routes to cannot take it: in a cluster, a result stream's queue on a node that is down. Then
   * the batch goes again without the route (the service stores it and forwards it to the
   * group's streams, which ask for new queues), and the route is left alone for a while.
   */
  async #publishRouted(session: BrokerSession, body: Uint8Array, route: string): Promise<void> {
    try {
      await session.publish(body, route);
    } catch (err) {
      // Lost with the connection: this fails at once and the caller sees why.
      await session.publish(body);
      const now = Date.now();
      for (const [r, until] of this.#refusedRoutes) if (until <= now) this.#refusedRoutes.delete(r);
      this.#refusedRoutes.set(route, now + REFUSED_ROUTE_MS);
      log.warn("The broker refused results routed to {route} ({err}); sent them to the service", {
        route,
        err: String(err),
      });
    }
  }

  /**
   * Queues `encoded` in the batch of its route on `session`; resolves with the broker's confirm.
   * Results of one task group leave together, under their group's route; a batcher goes once it
   * has nothing waiting or on the wire, so a daemon that served many groups keeps none of them.
   */
  #publish(session: BrokerSession, encoded: Uint8Array, route: string | undefined): Promise<void> {
    let byRoute = this.#batchers.get(session);
    if (!byRoute) {
      byRoute = new Map();
      this.#batchers.set(session, byRoute);
    }
    const usable = route !== undefined && route.length <= 180 && ROUTE_RE.test(route) &&
      !((this.#refusedRoutes.get(route) ?? 0) > Date.now());
    const key = usable ? route : "";
    let b = byRoute.get(key);
    if (!b) {
      const batcher: ResultBatcher = new ResultBatcher(
        (body) => key ? this.#publishRouted(session, body, key) : session.publish(body),
        { onIdle: () => byRoute.get(key) === batcher && byRoute.delete(key) },
      );
      byRoute.set(key, batcher);
      b = batcher;
    }
    return b.add(encoded);
  }
}
