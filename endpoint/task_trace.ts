/**
 * The endpoint's hops of a traced task (see `sdk/_tracing.ts`): `endpoint.task` from the task's
 * delivery off the broker until its result is safe, inside it `engine.task` from the interchange
 * taking the task until the result came back, `worker.run` from the worker's own
 * `execution-start` to `execution-end` timestamps (measured in the worker process, recorded
 * here, so a worker needs no exporter), and `endpoint.result` from the result's return until the
 * broker confirmed it or the journal kept it. The result carries `endpoint.result`'s context on
 * to the service. The daemon calls {@linkcode traceEndpointHops} only for a task that carries a
 * `traceparent`, and only when tracing is on.
 *
 * @module
 */
import { type ResultMessage, type TaskMessage, TaskState } from "../sdk/protocol/mod.ts";
import { recordHop, startHop } from "../sdk/_tracing.ts";

/** The endpoint's open hops of one task; `end` closes them once its result is safe. */
export interface EndpointTrace {
  end(): void;
}

function stamp(result: ResultMessage, state: TaskState): bigint | undefined {
  return result.task_statuses?.find((t) => t.state === state)?.timestamp;
}

/**
 * Records the hops of `task`, received at `receivedNs` (ns since the epoch), whose `result` has
 * just come back from the engine; sets the result's `traceparent`. Undefined when tracing is off
 * or the task is not traced.
 */
export function traceEndpointHops(
  task: TaskMessage,
  receivedNs: bigint,
  result: ResultMessage,
): EndpointTrace | undefined {
  const attrs = { "funcx.task_id": task.task_id };
  const endpoint = startHop("endpoint.task", task.traceparent, receivedNs, attrs);
  if (!endpoint) return undefined;
  const now = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  const queued = stamp(result, TaskState.WAITING_FOR_NODES) ?? receivedNs;
  const engine = recordHop("engine.task", endpoint, queued, now, attrs);
  const start = stamp(result, TaskState.EXECUTION_START);
  const end = stamp(result, TaskState.EXECUTION_END);
  if (engine && start !== undefined && end !== undefined) {
    recordHop("worker.run", engine, start, end, {
      ...attrs,
      "funcx.failed": !!result.error_details,
    });
  }
  const publish = startHop("endpoint.result", endpoint, now, attrs);
  if (publish) result.traceparent = publish.traceparent;
  return {
    end() {
      publish?.end();
      endpoint.end();
    },
  };
}
