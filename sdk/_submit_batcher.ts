/**
 * The executor's way out: tasks handed to `submit` wait in a queue and are drained into batches
 * of up to `batchSize` tasks of one task group per `POST /v2/submit`, a few requests at once, as
 * fast as they come. A submit that cannot reach the service is sent again with the same
 * idempotency key until it is answered; each accepted task is opened in `TaskOutcomes`, whose
 * result stream of the group is joined before the request goes out.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { FuncXClient } from "./client.ts";
import { FuncxAPIError } from "./errors.ts";
import type { FuncXFuture } from "./future.ts";
import type { TaskOutcomes } from "./_task_outcomes.ts";
import { untilAnswered } from "./_until_answered.ts";
import { submitEntry } from "./_submit_entry.ts";
import type { ResourceSpecificationWire } from "./protocol/resource_specification.ts";
import { heldHop, holdHop, nowMs, startHop, TRACING, tracingReady } from "./_tracing.ts";

const log = getLogger(["funcx", "sdk", "executor"]);

/** Submit requests an executor has on the way at once. */
const SUBMITS_IN_FLIGHT = 3;

/** A task handed to `submit` and not yet accepted by the service. */
export interface PendingTask {
  /** Its future. */
  future: FuncXFuture<unknown>;
  /** The id of its function (it may still be being registered). */
  functionId: Promise<string>;
  /** Its packed arguments. */
  payload: string;
  /** The task group it goes into: the executor's at the time of `submit`. */
  taskGroupId: string;
  /** What it asks for (an MPI task): the executor's at the time of `submit`. */
  resourceSpecification: ResourceSpecificationWire | undefined;
  /** When `submit` was called (ms since the epoch), kept only when tasks are traced. */
  submittedAt?: number;
}

/** What {@linkcode SubmitBatcher} needs from its executor. */
export interface SubmitBatcherOptions {
  /** The executor's client. */
  client: FuncXClient;
  /** Endpoint the tasks run on. */
  endpointId: string;
  /** Most tasks per submit request. */
  batchSize: number;
  /** Values for a multi-user endpoint's user endpoint template. */
  userEndpointConfig: Record<string, unknown> | undefined;
  /** The executor's name, for logs. */
  label: string;
  /** Aborted when the executor is: submits stop waiting for the service. */
  signal: AbortSignal;
  /** Where accepted tasks are opened. */
  outcomes: TaskOutcomes;
  /** Runs after each batch, accepted or not (the executor checks whether it is idle). */
  onBatchDone: () => void;
}

/** The queue of tasks to submit, and the submit requests on their way. */
export class SubmitBatcher {
  readonly #options: SubmitBatcherOptions;
  readonly #queue: PendingTask[] = [];
  /** Futures of batches whose submit request has not been answered yet. */
  readonly #inFlight = new Set<FuncXFuture<unknown>>();
  #unsent = 0;
  #submitted = 0;
  #flushing: Promise<void> | undefined;

  /** An empty queue. */
  constructor(options: SubmitBatcherOptions) {
    this.#options = options;
  }

  /** Tasks queued or on their way, whose submit answer has not come. */
  get unsent(): number {
    return this.#unsent;
  }

  /** Tasks the service has accepted. */
  get submitted(): number {
    return this.#submitted;
  }

  /** Queues `task`, joins its group's result stream and sends it with the next batch. */
  push(task: PendingTask): void {
    if (TRACING) task.submittedAt = nowMs();
    this.#queue.push(task);
    this.#unsent++;
    this.#options.outcomes.watch(task.taskGroupId);
    this.#scheduleFlush();
  }

  /** Takes `task` out of the queue; whether it was there (not yet sent). */
  remove(task: PendingTask): boolean {
    const i = this.#queue.indexOf(task);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    this.#unsent--;
    return true;
  }

  /** Cancels the futures of the tasks not yet sent. */
  cancelQueued(): void {
    for (const p of [...this.#queue]) p.future.cancel();
  }

  /** Rejects the futures of queued tasks and of those on their way with `reason`. */
  rejectAll(reason: unknown): void {
    for (const p of this.#queue.splice(0)) {
      this.#unsent--;
      p.future.setException(reason);
    }
    for (const f of [...this.#inFlight]) f.setException(reason);
  }

  /** Resolves once every queued task has been sent and answered. */
  async flushed(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = (async () => {
      // Let the current burst of submit() calls land in the queue before the first request.
      await Promise.resolve();
      // A few requests at once: the next batch is on its way while the service stores this one.
      const sending = new Set<Promise<void>>();
      while (this.#queue.length > 0 || sending.size > 0) {
        while (this.#queue.length > 0 && sending.size < SUBMITS_IN_FLIGHT) {
          const sent: Promise<void> = this.#send(this.#nextBatch())
            .finally(() => sending.delete(sent));
          sending.add(sent);
        }
        await Promise.race(sending);
      }
    })().finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0) this.#scheduleFlush();
    });
  }

  /** Takes the next batch off the queue: up to `batchSize` tasks of one task group. */
  #nextBatch(): PendingTask[] {
    const group = this.#queue[0]?.taskGroupId;
    let n = 0;
    while (
      n < this.#queue.length && n < this.#options.batchSize &&
      this.#queue[n]!.taskGroupId === group
    ) n++;
    return this.#queue.splice(0, n);
  }

  async #send(batch: PendingTask[]): Promise<void> {
    const { client, outcomes, signal, label, userEndpointConfig } = this.#options;
    const group = batch[0]!.taskGroupId;
    for (const p of batch) this.#inFlight.add(p.future);
    try {
      const ids = await Promise.all(batch.map((p) => p.functionId));
      // A traced task's trace starts at its submit and ends when its future settles.
      const traces = TRACING && await tracingReady() ? batch.map(traceSubmit) : undefined;
      const entries = batch.map((p, i) =>
        submitEntry(
          ids[i]!,
          this.#options.endpointId,
          p.payload,
          p.resourceSpecification,
          traces?.[i],
        )
      );
      // Whether this process's result queue is bound before the request goes out: if not, the
      // tasks may finish before it is, and their outcomes are read from the service once it is.
      const stream = outcomes.watch(group);
      const epoch = stream?.epoch;
      // One key for every attempt: the service does the submit once.
      const idempotencyKey = crypto.randomUUID();
      const res = await untilAnswered(
        () =>
          client.submit(entries, group, {
            createQueue: true,
            idempotencyKey,
            signal,
            ...(userEndpointConfig ? { userEndpointConfig } : {}),
          }),
        { what: "submit", label, signal },
      );
      const accepted: string[] = [];
      res.results.forEach((r, i) => {
        const f = batch[i]!.future;
        if (r.status === "Success") {
          this.#submitted++;
          f.setTaskId(r.task_uuid);
          if (traces) heldHopAttr(f, r.task_uuid);
          if (f.done) return; // cancelled, timed out or aborted while in flight
          outcomes.track(r.task_uuid, f);
          accepted.push(r.task_uuid);
          const early = stream?.claim(r.task_uuid);
          if (early) outcomes.deliver(early.result, early.from);
        } else {
          f.setException(new FuncxAPIError(r.http_status_code, r.code, r.reason, r.error_args));
        }
      });
      outcomes.catchUpIfUnbound(stream, epoch, accepted);
    } catch (err) {
      // A refusal (for example a function or endpoint that is not the user's), or the executor
      // was aborted: the tasks were not accepted.
      log.error("{label}: a batch of {n} tasks could not be submitted: {err}", {
        label,
        n: batch.length,
        err: String(err),
      });
      for (const p of batch) p.future.setException(err);
    } finally {
      for (const p of batch) this.#inFlight.delete(p.future);
      this.#unsent -= batch.length;
      this.#options.onBatchDone();
    }
  }
}

/** Starts the root span of `p`'s trace (`sdk.submit`); its `traceparent`. */
function traceSubmit(p: PendingTask): string | undefined {
  const hop = startHop("sdk.submit", undefined, p.submittedAt, {
    "funcx.task_group_id": p.taskGroupId,
  });
  if (!hop) return undefined;
  holdHop(p.future, hop);
  // After the hops that end as the future settles (sdk.result), so the root outlasts them.
  p.future.onSettled(() => queueMicrotask(() => hop.end()));
  return hop.traceparent;
}

function heldHopAttr(f: FuncXFuture<unknown>, taskId: string): void {
  heldHop(f)?.attr("funcx.task_id", taskId);
}
