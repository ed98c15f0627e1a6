/**
 * The service's metrics: one registry per process ({@linkcode serviceMetrics}), fed where things
 * happen (submits in the task routes, results in the result processor, broker reconnects in the
 * server, failed sign-ins in the sign-in guard and the token check) and read from the store at
 * each scrape (tasks by state, the outbox). `routes/metrics.ts` serves it as `GET /metrics`;
 * the dashboard reads the same instruments.
 *
 * Several replicas each count their own share; Prometheus adds them up (`sum by`). The gauges
 * read from the store are the same on every replica.
 *
 * @module
 */
import {
  addProcessMetrics,
  type Counter,
  type Gauge,
  type Histogram,
  MetricsRegistry,
} from "../sdk/_metrics.ts";
import { nsToSeconds, taskHops } from "../sdk/_task_hops.ts";
import { TaskState, type TaskTransition } from "../sdk/protocol/mod.ts";
import type { Store, TaskCompletion } from "./store.ts";

/** The service's instruments. */
export interface ServiceMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: MetricsRegistry;
  /** Tasks accepted by `POST /v2/submit`. */
  readonly tasksSubmitted: Counter;
  /** Results stored, by `outcome` (`success`, `failed`); a redelivered result is not counted. */
  readonly results: Counter;
  /** Results received again for a task that already had one (redeliveries). */
  readonly duplicateResults: Counter;
  /** Messages on the results queue that could not be read or were of an unknown type. */
  readonly invalidMessages: Counter;
  /** Seconds from a task's submit to the service storing its result. */
  readonly roundTrip: Histogram;
  /** Seconds of each hop of a task's trip (`from`, `to`: task states). */
  readonly hops: Histogram;
  /** Times the broker connection came back after a loss. */
  readonly brokerReconnects: Counter;
  /** Whether the broker connection is up (1) or not (0), at the scrape. */
  readonly brokerConnected: Gauge;
  /** Failed sign-ins (password or client secret), by `kind` and `reason`. */
  readonly signInFailures: Counter;
  /** API requests refused for their bearer token, by `reason` (`missing`, `invalid`). */
  readonly tokenRejections: Counter;
  /** Tasks in the store by `state`, at the scrape. */
  readonly tasks: Gauge;
  /** Task messages waiting in the outbox for the broker, at the scrape. */
  readonly outbox: Gauge;
}

/** A fresh set of the service's instruments in a registry of their own. */
export function createServiceMetrics(): ServiceMetrics {
  const r = new MetricsRegistry();
  const m: ServiceMetrics = {
    registry: r,
    tasksSubmitted: r.counter("funcx_tasks_submitted_total", "Tasks accepted by POST /v2/submit"),
    results: r.counter(
      "funcx_results_total",
      "Task results stored, by outcome (a redelivered result counts once)",
      ["outcome"],
    ).init({ outcome: "success" }).init({ outcome: "failed" }),
    duplicateResults: r.counter(
      "funcx_results_duplicate_total",
      "Results received again for a task that already had one",
    ),
    invalidMessages: r.counter(
      "funcx_results_invalid_messages_total",
      "Messages on the results queue that could not be read or were of an unknown type",
    ),
    roundTrip: r.histogram(
      "funcx_task_round_trip_seconds",
      "Seconds from a task's submit to the service storing its result",
    ),
    hops: r.histogram(
      "funcx_task_hop_seconds",
      "Seconds of each hop of a task's trip, from one recorded state to the next " +
        "(submitted: the service accepted it; result-received: the service stored its result)",
      { labelNames: ["from", "to"] },
    ),
    brokerReconnects: r.counter(
      "funcx_broker_reconnects_total",
      "Times the broker connection came back after a loss",
    ),
    brokerConnected: r.gauge("funcx_broker_connected", "1 while the broker connection is up"),
    signInFailures: r.counter(
      "funcx_sign_in_failures_total",
      "Failed sign-ins by account kind (user: password, client: client secret) and reason " +
        "(bad_secret, locked)",
      ["kind", "reason"],
    ),
    tokenRejections: r.counter(
      "funcx_token_rejections_total",
      "API requests refused for their bearer token, by reason (missing, invalid)",
      ["reason"],
    ).init({ reason: "missing" }).init({ reason: "invalid" }),
    tasks: r.gauge("funcx_tasks", "Tasks in the store by state", ["state"]),
    outbox: r.gauge("funcx_outbox_messages", "Task messages waiting in the outbox for the broker"),
  };
  for (const kind of ["user", "client"]) {
    for (const reason of ["bad_secret", "locked"]) m.signInFailures.init({ kind, reason });
  }
  addProcessMetrics(r);
  return m;
}

/** The instruments of this service process. */
export const serviceMetrics: ServiceMetrics = createServiceMetrics();

/** A result the service has just stored for the first time. */
export interface StoredResult {
  /** Its outcome. */
  status: "success" | "failed";
  /** When its task was submitted (epoch seconds). */
  createdAt: number;
  /** When the service stored the result (epoch seconds). */
  completionT: number;
  /** The transitions the endpoint recorded. */
  transitions: readonly TaskTransition[] | null;
}

/**
 * Counts a stored result and records its round trip and hops: from the submit to the endpoint's
 * first transition, between the endpoint's transitions, and from its last to the service.
 */
export function observeResult(m: ServiceMetrics, r: StoredResult): void {
  m.results.inc({ outcome: r.status });
  m.roundTrip.observe({}, Math.max(0, r.completionT - r.createdAt));
  const transitions = r.transitions ?? [];
  const first = transitions[0];
  const last = transitions[transitions.length - 1];
  if (!first || !last) return;
  const createdNs = BigInt(Math.round(r.createdAt * 1e6)) * 1000n;
  const completedNs = BigInt(Math.round(r.completionT * 1e6)) * 1000n;
  m.hops.observe({ from: "submitted", to: first.state }, nsToSeconds(first.timestamp - createdNs));
  for (const h of taskHops(transitions)) m.hops.observe({ from: h.from, to: h.to }, h.seconds);
  m.hops.observe(
    { from: last.state, to: "result-received" },
    nsToSeconds(completedNs - last.timestamp),
  );
}

/** Reads the scrape-time gauges: tasks by state and the outbox from the store, the broker link. */
export async function refreshServiceGauges(
  m: ServiceMetrics,
  store: Pick<Store, "countTasksByStatus" | "outboxSize">,
  brokerConnected: boolean,
): Promise<void> {
  const [counts, outbox] = await Promise.all([store.countTasksByStatus(), store.outboxSize()]);
  // Every state is there, at 0 when no task is in it, so a query never finds a series missing.
  const all = new Map<string, number>(Object.values(TaskState).map((s) => [s, 0]));
  for (const [state, n] of counts) all.set(state, n);
  m.tasks.replace([...all].map(([state, n]) => [{ state }, n]));
  m.outbox.set({}, outbox);
  m.brokerConnected.set({}, brokerConnected ? 1 : 0);
}

/**
 * Records a result batch the store has applied: each completion whose task was still unfinished
 * (`submitted` holds its submit time) is a first result; `duplicates` were redeliveries.
 */
export function observeBatch(
  m: ServiceMetrics,
  completions: readonly TaskCompletion[],
  submitted: ReadonlyMap<string, number>,
  duplicates: number,
): void {
  if (duplicates > 0) m.duplicateResults.inc({}, duplicates);
  const seen = new Set<string>();
  for (const c of completions) {
    const createdAt = submitted.get(c.taskId);
    if (createdAt === undefined || seen.has(c.taskId)) continue;
    seen.add(c.taskId);
    observeResult(m, {
      status: c.status,
      createdAt,
      completionT: c.completionT,
      transitions: c.transitions,
    });
  }
}
