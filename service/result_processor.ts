/**
 * The result processor: turns batches of messages from the `results` queue into store writes
 * (task results, intermediate task states, endpoint status reports). One transaction per batch;
 * a task that already has a result keeps it, so redelivered results are harmless. Endpoint status
 * lives in the store too, not in this process: with several service replicas consuming the
 * shared `results` queue, each sees only some of an endpoint's reports, and every replica must
 * still answer `/status` the same way.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  type EPStatusReport,
  isTaskState,
  type Message,
  packMessage,
  type ResultMessage,
  serialize,
  TaskState,
  unpackMessage,
} from "../sdk/protocol/mod.ts";
import { directResultSender } from "../sdk/result_watcher.ts";
import type { IncomingResult, ServiceBroker } from "./broker.ts";
import type { EndpointStatus, ResultRoute, Store, TaskCompletion } from "./store.ts";
import { nowMs, startResultHops, TRACING } from "./task_trace.ts";
import { observeBatch, serviceMetrics } from "./metrics.ts";

const log = getLogger(["funcx", "service", "results"]);

/**
 * How far apart the clocks of two service replicas may be (a task's submit time and a stream's
 * attach time may come from different ones): a task submitted this soon after an attach counts
 * as submitted before it, and its result is forwarded.
 */
const CLOCK_SKEW_S = 0.25;

/**
 * The status an endpoint's report gives it: online for two heartbeat periods from `now` (epoch
 * seconds). A period of 0 is an endpoint saying goodbye: offline from now on.
 */
export function endpointStatusOf(report: EPStatusReport, now: number): EndpointStatus {
  const period = Number(report.global_state["heartbeat_period"] ?? 30);
  const ttlS = Number.isFinite(period) && period > 0 ? period * 2 : 0;
  return { endpointId: report.endpoint_id, state: report.global_state, expiresAt: now + ttlS };
}

/** The endpoint a message on `results` came from: the first word of its routing key. */
function senderOf(routingKey: string): string {
  const dot = routingKey.indexOf(".");
  return (dot < 0 ? routingKey : routingKey.slice(0, dot)).toLowerCase();
}

/** Counters of what the processor has handled. */
export interface ResultProcessorStats {
  results: number;
  /** Results that reached their streams straight from the endpoint, not forwarded again. */
  direct: number;
  duplicates: number;
  invalid: number;
  reports: number;
}

/** Applies batches from `results` to the store. */
export class ResultProcessor {
  readonly #store: Store;
  readonly #broker: Pick<ServiceBroker, "forward"> | undefined;
  readonly #maxResultBytes: number;
  readonly stats: ResultProcessorStats = {
    results: 0,
    direct: 0,
    duplicates: 0,
    invalid: 0,
    reports: 0,
  };

  /**
   * `broker`, when given, receives results to forward to users' task group queues; results over
   * `maxResultBytes` characters are stored as `MaxResultSizeExceeded` failures instead.
   */
  constructor(
    store: Store,
    broker?: Pick<ServiceBroker, "forward">,
    maxResultBytes: number = 10 * 1024 * 1024,
  ) {
    this.#store = store;
    this.#broker = broker;
    this.#maxResultBytes = maxResultBytes;
  }

  #oversized(r: ResultMessage): ResultMessage {
    const message = `Task result of ${r.data.length}B exceeded the service's limit of ` +
      `${this.#maxResultBytes}B: write large results to shared storage and return their path`;
    log.warn("Task {id}: {message}", { id: r.task_id, message });
    return {
      ...r,
      data: serialize({ name: "MaxResultSizeExceeded", message, stack: "" }),
      error_details: { code: "MaxResultSizeExceeded", user_message: `remote error: ${message}` },
    };
  }

  /**
   * Results grouped by the task group queue they go to. A result that came with its group's route
   * reached the group's streams already, and goes again only when a stream may have missed it:
   * one attached after its task was submitted (its queue may have been bound after the result
   * left), or at a time the store does not know.
   */
  #forwards(
    results: readonly ResultMessage[],
    direct: ReadonlySet<ResultMessage>,
    routes: ReadonlyMap<string, ResultRoute>,
  ): Map<string, ResultMessage[]> {
    const forwards = new Map<string, ResultMessage[]>();
    for (const r of results) {
      const route = routes.get(r.task_id);
      if (route?.queue === undefined) continue;
      const { queue, streamAttachedAt, createdAt } = route;
      if (
        direct.has(r) && streamAttachedAt !== undefined &&
        streamAttachedAt + CLOCK_SKEW_S < createdAt
      ) {
        this.stats.direct++;
        continue;
      }
      const list = forwards.get(queue);
      if (list) list.push(r);
      else forwards.set(queue, [r]);
    }
    return forwards;
  }

  /**
   * Handles one batch: stores it, then forwards to their task groups' queues the results a stream
   * may have missed. Throws if either fails, and the batch is redelivered; a redelivered result is
   * stored once but forwarded again, and the SDK drops the repeat by task id.
   */
  async handle(batch: readonly IncomingResult[]): Promise<void> {
    let results: ResultMessage[] = [];
    /** Results that came with their group's route: the broker took them to the streams too. */
    const direct = new Set<ResultMessage>();
    /** The endpoint each result came from: the first word of its routing key. */
    const senders = new Map<ResultMessage, string>();
    let completions: TaskCompletion[] = [];
    const updates: { taskId: string; status: string }[] = [];
    const statuses: EndpointStatus[] = [];
    const now = Date.now() / 1000;
    const started = TRACING ? nowMs() : 0;
    for (const item of batch) {
      let msg: Message;
      try {
        msg = unpackMessage(item.body);
      } catch (err) {
        this.stats.invalid++;
        serviceMetrics.invalidMessages.inc();
        log.error("Dropping an unreadable message from {key}: {err}", {
          key: item.routingKey,
          err: String(err),
        });
        continue;
      }
      switch (msg.message_type) {
        case "result":
        case "result_batch": {
          const list = msg.message_type === "result" ? [msg.data] : msg.data.results;
          const routed = directResultSender(item.routingKey) !== undefined;
          const sender = senderOf(item.routingKey);
          for (const raw of list) {
            const r = raw.data.length > this.#maxResultBytes ? this.#oversized(raw) : raw;
            results.push(r);
            senders.set(r, sender);
            // An oversized result reached the streams as it was: they get the stored failure.
            if (routed && r === raw) direct.add(r);
            completions.push({
              taskId: r.task_id,
              status: r.error_details ? "failed" : "success",
              data: r.data,
              errorCode: r.error_details?.code ?? null,
              completionT: now,
              transitions: r.task_statuses,
            });
          }
          break;
        }
        case "task_transition": {
          const last = msg.data.transitions[msg.data.transitions.length - 1];
          if (last && isTaskState(last.state)) {
            updates.push({ taskId: msg.data.task_id, status: last.state });
          }
          break;
        }
        case "ep_status_report": {
          this.stats.reports++;
          statuses.push(endpointStatusOf(msg.data, now));
          for (const [taskId, transitions] of Object.entries(msg.data.task_statuses)) {
            const last = transitions[transitions.length - 1];
            if (last && last.state !== TaskState.SUCCESS && last.state !== TaskState.FAILED) {
              updates.push({ taskId, status: last.state });
            }
          }
          break;
        }
        default:
          this.stats.invalid++;
          serviceMetrics.invalidMessages.inc();
          log.warn("Ignoring a {type} message on the results queue", { type: msg.message_type });
      }
    }
    // One read before the batch lands: where each result goes, and which tasks it completes.
    const routes = completions.length > 0
      ? await this.#store.resultRoutesOf(completions.map((c) => c.taskId))
      : new Map<string, ResultRoute>();
    // An endpoint publishes only under its own id (its broker login allows no other key); a
    // result for a task that went to another endpoint is not that task's result.
    const foreign = new Set<number>();
    results.forEach((r, i) => {
      const route = routes.get(r.task_id);
      if (route === undefined || route.endpointId === senders.get(r)) return;
      foreign.add(i);
      this.stats.invalid++;
      serviceMetrics.invalidMessages.inc();
      log.warn("Dropping a result for task {id} from endpoint {from}: the task went to {to}", {
        id: r.task_id,
        from: senders.get(r),
        to: route.endpointId,
      });
    });
    if (foreign.size > 0) {
      results = results.filter((_, i) => !foreign.has(i));
      completions = completions.filter((_, i) => !foreign.has(i));
    }
    // Traced results go on to the user's stream with the context of this hop.
    const hops = TRACING ? startResultHops(results, started) : undefined;
    const forwards = this.#broker ? this.#forwards(results, direct, routes) : new Map();
    // Stored first, then forwarded: a forward goes to a stream that may have missed the result
    // (the common path needs none: the endpoint's publish reached the streams), and a stream that
    // reads the store after its queue is bound then finds what was forwarded before that. A
    // crash between the two redelivers the batch, which is forwarded then; the SDK drops repeats.
    const changed = await this.#store.applyResults({ updates, completions, statuses });
    if (forwards.size > 0 && this.#broker) {
      // One message per task group queue and batch: the user's stream gets them together.
      await this.#broker.forward(
        [...forwards].map(([queue, results]) => ({
          routingKey: queue,
          body: results.length === 1
            ? packMessage({ message_type: "result", data: results[0]! })
            : packMessage({ message_type: "result_batch", data: { results } }),
        })),
      );
    }
    this.stats.results += changed;
    this.stats.duplicates += completions.length - changed;
    const submitted = new Map<string, number>();
    for (const [id, route] of routes) if (!route.finished) submitted.set(id, route.createdAt);
    observeBatch(serviceMetrics, completions, submitted, completions.length - changed);
    for (const hop of hops ?? []) hop.end();
  }
}
