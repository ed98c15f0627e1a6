/**
 * The endpoint daemon's metrics, served in Prometheus text format on `metrics_address:
 * metrics_port` when the config sets a port. Results are observed as the daemon hands them to
 * the broker (outcome, time from receipt, each hop between the transitions the engine recorded);
 * everything else is read from the running {@linkcode Endpoint} at each scrape: its counters
 * since start, the engine's queue, workers and blocks, the unacked tasks and the journal.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  addProcessMetrics,
  type Counter,
  EXPOSITION_CONTENT_TYPE,
  type Histogram,
  MetricsRegistry,
} from "../sdk/_metrics.ts";
import { nsToSeconds, taskHops } from "../sdk/_task_hops.ts";
import type { ResultMessage } from "../sdk/protocol/mod.ts";
import type { EngineStatus } from "./engine/engine.ts";
import { ENDPOINT_VERSION } from "./version.ts";

/** Counters since start. */
export interface EndpointStats {
  tasksReceived: number;
  resultsPublished: number;
  resultsStored: number;
  duplicatesSkipped: number;
  reconnects: number;
}

const log = getLogger(["funcx", "endpoint", "metrics"]);

/** The results' instruments, fed as results leave the engine (one set per daemon process). */
export interface EndpointResultMetrics {
  /** Registry they are in. */
  readonly registry: MetricsRegistry;
  /** Results by `outcome` (`success`, `failed`). */
  readonly results: Counter;
  /** Seconds from the daemon receiving a task to its result. */
  readonly taskSeconds: Histogram;
  /** Seconds of each hop (`from`, `to`: task states) inside the endpoint. */
  readonly hops: Histogram;
}

function createResultMetrics(): EndpointResultMetrics {
  const r = new MetricsRegistry();
  return {
    registry: r,
    results: r.counter("funcx_endpoint_results_total", "Task results by outcome", ["outcome"])
      .init({ outcome: "success" }).init({ outcome: "failed" }),
    taskSeconds: r.histogram(
      "funcx_endpoint_task_seconds",
      "Seconds from the daemon receiving a task to its result",
    ),
    hops: r.histogram(
      "funcx_endpoint_task_hop_seconds",
      "Seconds of each hop of a task inside the endpoint, from one recorded state to the next",
      { labelNames: ["from", "to"] },
    ),
  };
}

/** The result instruments of this daemon process. */
export const endpointResultMetrics: EndpointResultMetrics = createResultMetrics();

/**
 * Records a result the daemon is about to deliver: its outcome, its time since the daemon's own
 * first transition (receipt) and each hop between its transitions.
 */
export function observeEndpointResult(
  result: ResultMessage,
  m: EndpointResultMetrics = endpointResultMetrics,
): void {
  m.results.inc({ outcome: result.error_details ? "failed" : "success" });
  const t = result.task_statuses ?? [];
  const first = t[0];
  const last = t[t.length - 1];
  if (!first || !last) return;
  m.taskSeconds.observe({}, nsToSeconds(last.timestamp - first.timestamp));
  for (const h of taskHops(t)) m.hops.observe({ from: h.from, to: h.to }, h.seconds);
}

/** What the metrics read from a running endpoint at each scrape. */
export interface EndpointMetricsSource {
  /** The endpoint's id. */
  readonly id: string;
  /** Its lifecycle state (`running`, `disconnected`, ...). */
  readonly state: string;
  /** Its counters since start. */
  readonly stats: EndpointStats;
  /** The engine's counts, the unacked tasks and the journaled results. */
  globalState(): EngineStatus & { outstanding_tasks: number; stored_results: number };
}

/**
 * A registry with the scrape-time instruments of `source` and, after them, the result
 * instruments `results` (rendered together as one exposition).
 */
export function endpointRegistry(
  source: EndpointMetricsSource,
  results: EndpointResultMetrics = endpointResultMetrics,
): { render(): Promise<string> } {
  const r = new MetricsRegistry();
  const info = r.gauge("funcx_endpoint_info", "The endpoint's id and version (always 1)", [
    "endpoint_id",
    "version",
  ]);
  info.set({ endpoint_id: source.id, version: ENDPOINT_VERSION }, 1);
  const connected = r.gauge("funcx_endpoint_connected", "1 while the broker connection is up");
  const counters: Array<[Counter, keyof EndpointStats]> = [
    [
      r.counter("funcx_endpoint_tasks_received_total", "Tasks taken from the broker"),
      "tasksReceived",
    ],
    [
      r.counter("funcx_endpoint_results_published_total", "Results the broker confirmed"),
      "resultsPublished",
    ],
    [
      r.counter(
        "funcx_endpoint_results_journaled_total",
        "Results written to the result journal before the broker confirmed them",
      ),
      "resultsStored",
    ],
    [
      r.counter(
        "funcx_endpoint_duplicate_tasks_total",
        "Tasks delivered again after they ran here (acked, not run again)",
      ),
      "duplicatesSkipped",
    ],
    [
      r.counter("funcx_endpoint_reconnects_total", "Times the broker connection was lost"),
      "reconnects",
    ],
  ];
  const tasks = r.gauge(
    "funcx_endpoint_tasks",
    "Tasks taken from the broker and not yet acked, by state (waiting-for-nodes: queued in the " +
      "interchange; running: on a worker or their result on its way)",
    ["state"],
  );
  const queue = r.gauge(
    "funcx_endpoint_queue_depth",
    "Items waiting, by queue (interchange: tasks for a worker; result_journal: results the " +
      "broker has not confirmed; unacked: tasks not yet acked to the broker)",
    ["queue"],
  );
  const workers = r.gauge("funcx_endpoint_workers", "Live workers by state", ["state"]);
  const managers = r.gauge("funcx_endpoint_managers", "Managers connected and ready");
  const blocks = r.gauge("funcx_endpoint_blocks", "Blocks by state", ["state"]);
  const ended = r.counter(
    "funcx_endpoint_blocks_ended_total",
    "Blocks that ended: completed as asked, or failed (lost, timed out, cancelled from outside)",
    ["outcome"],
  );
  r.collect(() => {
    connected.set({}, source.state === "running" ? 1 : 0);
    for (const [c, key] of counters) c.inc({}, Math.max(0, source.stats[key] - c.value()));
    const g = source.globalState();
    tasks.set({ state: "waiting-for-nodes" }, g.pending_tasks);
    tasks.set({ state: "running" }, Math.max(0, g.outstanding_tasks - g.pending_tasks));
    queue.set({ queue: "interchange" }, g.pending_tasks);
    queue.set({ queue: "result_journal" }, g.stored_results);
    queue.set({ queue: "unacked" }, g.outstanding_tasks);
    workers.set({ state: "idle" }, g.idle_workers);
    workers.set({ state: "busy" }, Math.max(0, g.total_workers - g.idle_workers));
    managers.set({}, g.managers);
    const b = g.blocks ?? { pending: 0, running: 0, completed: 0, failed: 0 };
    blocks.set({ state: "pending" }, b.pending);
    blocks.set({ state: "running" }, b.running);
    for (const outcome of ["completed", "failed"] as const) {
      ended.inc({ outcome }, Math.max(0, b[outcome] - ended.value({ outcome })));
    }
  });
  addProcessMetrics(r);
  return {
    render: async () => (await r.render()) + (await results.registry.render()),
  };
}

/** Options of {@linkcode serveEndpointMetrics}. */
export interface ServeMetricsOptions {
  /** Address to bind. @default "127.0.0.1" */
  hostname?: string;
  /** Port; 0 picks a free one. */
  port: number;
}

/** A metrics listener. */
export interface MetricsServer {
  /** `http://host:port` it listens on. */
  readonly address: string;
  /** Stops listening; idempotent. */
  close(): Promise<void>;
}

/** Serves `GET /metrics` of `source` until closed. */
export async function serveEndpointMetrics(
  source: EndpointMetricsSource,
  options: ServeMetricsOptions,
): Promise<MetricsServer> {
  const registry = endpointRegistry(source);
  const hostname = options.hostname ?? "127.0.0.1";
  const { promise: listening, resolve } = Promise.withResolvers<void>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname, port: options.port, onListen: () => resolve() },
      async (req) => {
        const path = new URL(req.url).pathname;
        if (req.method !== "GET" || path !== "/metrics") {
          return new Response(`No ${req.method} ${path} here: the metrics are at GET /metrics\n`, {
            status: 404,
          });
        }
        try {
          return new Response(await registry.render(), {
            headers: { "content-type": EXPOSITION_CONTENT_TYPE },
          });
        } catch (err) {
          log.error("Cannot render the metrics: {err}", { err: String(err) });
          return new Response("Cannot render the metrics; see the endpoint log\n", { status: 500 });
        }
      },
    );
  } catch (err) {
    throw new Error(
      `Cannot serve the metrics on ${hostname}:${options.port} (metrics_address, metrics_port): ` +
        (err as Error).message,
      { cause: err },
    );
  }
  await listening;
  const address = `http://${
    server.addr.hostname.includes(":") ? `[${server.addr.hostname}]` : server.addr.hostname
  }:${server.addr.port}`;
  let closed: Promise<void> | undefined;
  return {
    address,
    close: () => (closed ??= server.shutdown()),
  };
}
