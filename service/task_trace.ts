/**
 * The service's hops of a traced task (see `sdk/_tracing.ts`): `service.submit` from the submit
 * request's arrival until the task and its outbox message are stored (a child of the SDK's
 * `sdk.submit`, whose context the task's submit entry carries), `broker.publish` from the outbox
 * relay's publish until the broker confirmed it, and `service.result` from a result batch's
 * arrival until it is stored and forwarded to the user's stream (a child of the endpoint's
 * `endpoint.result`). The task and result messages carry the service's hop on.
 *
 * @module
 */
import {
  type Hop,
  nowMs,
  parseTraceparent,
  recordHop,
  startHop,
  TRACING,
} from "../sdk/_tracing.ts";

export { nowMs, TRACING };

/**
 * The `traceparent` of a submitted task's options (the 4th member of its entry), or undefined
 * when it has none or it is not a W3C `traceparent` (tracing is best effort: never a 400).
 */
export function submittedTraceparent(options: unknown): string | undefined {
  if (!options || typeof options !== "object") return undefined;
  const v = (options as Record<string, unknown>)["traceparent"];
  return typeof v === "string" && parseTraceparent(v) ? v : undefined;
}

/**
 * Starts `service.submit` of task `taskId` at `startMs`, child of the SDK's `traceparent`; the
 * context for the task message (the SDK's own when the service does not trace), or undefined.
 */
export function startSubmitHop(
  traceparent: string | undefined,
  startMs: number,
  taskId: string,
  hops: Map<string, Hop>,
): string | undefined {
  if (!traceparent || !TRACING) return traceparent;
  const hop = startHop("service.submit", traceparent, startMs, { "funcx.task_id": taskId });
  if (!hop) return traceparent;
  hops.set(taskId, hop);
  return hop.traceparent;
}

/** Records `broker.publish` of a task whose publish started at `startMs` and is confirmed now. */
export function recordPublishHop(
  traceparent: string | undefined,
  startMs: number,
  taskId: string,
): void {
  if (traceparent) {
    recordHop("broker.publish", traceparent, startMs, nowMs(), { "funcx.task_id": taskId });
  }
}

/**
 * Starts `service.result` for each traced result of a batch that arrived at `startMs` and gives
 * the result the hop's context, to forward; the hops, to end once the batch is forwarded.
 */
export function startResultHops(
  results: ReadonlyArray<{ task_id: string; traceparent?: string }>,
  startMs: number,
): Hop[] {
  const hops: Hop[] = [];
  for (const r of results) {
    if (!r.traceparent) continue;
    const hop = startHop("service.result", r.traceparent, startMs, { "funcx.task_id": r.task_id });
    if (!hop) continue;
    r.traceparent = hop.traceparent;
    hops.push(hop);
  }
  return hops;
}
