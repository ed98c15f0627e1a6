/**
 * The executor's open tasks and how their outcomes reach them. A task is open from the submit
 * answer that gave its id until its future settles. Outcomes come on this process's result
 * stream of the task's group (`_result_hub.ts`), and are read from the service instead when the
 * stream cannot have them: its queue was bound after the task was sent, or the stream is down.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { FuncXClient } from "./client.ts";
import { type BatchResult, resultValue } from "./_client_tasks.ts";
import { remoteErrorOf, taskFailure } from "./errors.ts";
import { FuncXFuture } from "./future.ts";
import type { ResultMessage } from "./protocol/mod.ts";
import { type ResultSubscriber, SharedResultStream } from "./_result_hub.ts";
import { heldHop, startHop, TRACING } from "./_tracing.ts";

const log = getLogger(["funcx", "sdk", "executor"]);

/** What {@linkcode TaskOutcomes} needs from its executor. */
export interface TaskOutcomesOptions {
  /** The executor's client. */
  client: FuncXClient;
  /** The executor's name, for logs. */
  label: string;
  /** The endpoint the executor's tasks go to. */
  endpointId: string;
  /** Aborted when the executor is: no more reads from the service. */
  signal: AbortSignal;
  /** Whether tasks were handed to a submit whose answer has not come (their results may come first). */
  awaitingIds: () => boolean;
  /** Whether the executor has nothing queued, on its way or open (then no stream is joined). */
  idle: () => boolean;
}

/** An executor's open tasks, by task id, and the result streams of their task groups. */
export class TaskOutcomes {
  readonly #client: FuncXClient;
  readonly #label: string;
  readonly #endpointId: string;
  readonly #signal: AbortSignal;
  readonly #idle: () => boolean;
  readonly #open = new Map<string, FuncXFuture<unknown>>();
  /**
   * The endpoint of each open task that went to another endpoint than the executor's (a task of
   * a reattached group, sent by another executor): the one endpoint its result may come from.
   */
  readonly #sentTo = new Map<string, string>();
  /** The result streams of the task groups this executor has tasks in, by group. */
  readonly #streams = new Map<string, SharedResultStream>();
  readonly #subscriber: ResultSubscriber;
  /** Task ids waiting for the next read of outcomes from the service. */
  #toPoll = new Set<string>();
  #polling: Promise<void> | undefined;

  /** Starts with no open task and no stream. */
  constructor(options: TaskOutcomesOptions) {
    this.#client = options.client;
    this.#label = options.label;
    this.#endpointId = options.endpointId.toLowerCase();
    this.#signal = options.signal;
    this.#idle = options.idle;
    this.#subscriber = {
      offer: (r, from) => this.deliver(r, from),
      awaitingIds: options.awaitingIds,
      catchUp: () => void this.catchUp([...this.#open.keys()]),
    };
  }

  /** How many tasks are open. */
  get size(): number {
    return this.#open.size;
  }

  /** Opens `taskId`: its outcome settles `future`. */
  track(taskId: string, future: FuncXFuture<unknown>): void {
    this.#open.set(taskId, future);
  }

  /** Closes `taskId` without settling its future; whether it was open. */
  forget(taskId: string): boolean {
    this.#sentTo.delete(taskId);
    return this.#open.delete(taskId);
  }

  /** Rejects the future of every open task with `reason` and closes them. */
  rejectAll(reason: unknown): void {
    const open = [...this.#open.values()];
    this.#open.clear();
    this.#sentTo.clear();
    for (const f of open) f.setException(reason);
  }

  /**
   * Settles the future of `r`'s task; `false` when this executor does not have it open. A result
   * that came straight `from` an endpoint other than the task's is dropped (an endpoint may
   * publish only results of tasks sent to it), and the task stays open for its real result.
   */
  deliver(r: ResultMessage, from?: string): boolean {
    const f = this.#open.get(r.task_id);
    if (!f) return false;
    const endpoint = this.#sentTo.get(r.task_id) ?? this.#endpointId;
    if (from !== undefined && from !== endpoint) {
      log.warn("{label}: dropped a result for task {id} from endpoint {from}, not {endpoint}", {
        label: this.#label,
        id: r.task_id,
        from,
        endpoint,
      });
      return true;
    }
    this.forget(r.task_id);
    // The last hop of a traced task: its result read from the stream and its future settled. A
    // result that came straight from the endpoint hangs from the endpoint's hop, one the service
    // forwarded from the service's.
    const hop = TRACING
      ? startHop("sdk.result", r.traceparent ?? heldHop(f), undefined, {
        "funcx.task_id": r.task_id,
        ...(from === undefined ? {} : { "funcx.read_from": "endpoint" }),
      })
      : undefined;
    if (hop) f.onSettled(() => hop.end());
    if (r.error_details) {
      f.setException(
        taskFailure(r.task_id, r.error_details.code, remoteErrorOf(r.data)),
      );
      return true;
    }
    try {
      f.setResult(resultValue(r.task_id, r.data));
    } catch (err) {
      f.setException(err);
    }
    return true;
  }

  /** The result stream of `group`, joined if this executor has not yet (unless it is idle). */
  watch(group: string): SharedResultStream | undefined {
    const joined = this.#streams.get(group);
    if (joined || this.#idle()) return joined;
    // Executors of one task group in this process share one stream: one queue of this process.
    const stream = SharedResultStream.join(
      this.#client.serviceAddress,
      group,
      () => this.#client.openResultStream(group),
      this.#subscriber,
    );
    this.#streams.set(group, stream);
    return stream;
  }

  /** Leaves every result stream (the last executor out closes each). */
  async close(): Promise<void> {
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    await Promise.all(streams.map((s) => s.leave(this.#subscriber)));
  }

  /**
   * Reads the outcomes of `taskIds` (those still open) from the service and settles the futures
   * of finished ones. One read at a time; ids asked for meanwhile join the next. A failed read
   * is left to the next one (the stream's poll comes back every few seconds).
   */
  catchUp(taskIds: readonly string[]): Promise<void> {
    for (const id of taskIds) if (this.#open.has(id)) this.#toPoll.add(id);
    if (this.#polling || this.#toPoll.size === 0) return this.#polling ?? Promise.resolve();
    this.#polling = (async () => {
      while (this.#toPoll.size > 0 && !this.#signal.aborted) {
        const ids = [...this.#toPoll].filter((id) => this.#open.has(id));
        this.#toPoll = new Set();
        if (ids.length === 0) break;
        let results: Map<string, BatchResult>;
        try {
          results = await this.#client.getBatchResult(ids, { signal: this.#signal });
        } catch (err) {
          log.warn("{label}: cannot read {n} task outcomes from the service now: {err}", {
            label: this.#label,
            n: ids.length,
            err: String(err),
          });
          break;
        }
        for (const [id, r] of results) this.#settleFrom(id, r);
      }
    })().finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  /**
   * Reads `taskIds` from the service once this process's queue is bound, when it was not bound
   * (or was another queue) at `epoch`, before they were sent or read: their results may have
   * been forwarded before the queue existed.
   */
  catchUpIfUnbound(
    stream: SharedResultStream | undefined,
    epoch: number | undefined,
    taskIds: string[],
  ): void {
    if (taskIds.length === 0 || !stream) return;
    if (epoch === undefined || epoch !== stream.epoch) {
      void stream.whenBound().then(() => this.catchUp(taskIds));
    }
  }

  /**
   * Futures for the tasks `ids` of `group`, as read from the service in `results`: finished
   * ones settled at once, the others opened (a task already open keeps its future), their
   * results coming on the group's stream. `onSettled` runs when an opened future settles.
   */
  reattach(
    group: string,
    ids: readonly string[],
    results: ReadonlyMap<string, BatchResult>,
    onSettled: () => void,
  ): FuncXFuture<unknown>[] {
    const out: FuncXFuture<unknown>[] = [];
    const pending: string[] = [];
    for (const id of ids) {
      const f = this.#open.get(id) ?? new FuncXFuture<unknown>((x) => this.forget(x.taskId!));
      f.setTaskId(id);
      const r = results.get(id)!;
      if (!r.pending) {
        this.forget(id);
        if (r.error) f.setException(r.error);
        else f.setResult(r.result);
      } else if (!this.#open.has(id)) {
        this.#open.set(id, f);
        // Sent by another executor, maybe to another endpoint: its result comes from that one.
        const endpoint = r.endpointId?.toLowerCase();
        if (endpoint !== undefined && endpoint !== this.#endpointId) this.#sentTo.set(id, endpoint);
        pending.push(id);
        f.onSettled(onSettled);
      }
      out.push(f);
    }
    // Results stored between the read and the stream's queue being bound are read again.
    const epoch = this.#streams.get(group)?.epoch;
    this.catchUpIfUnbound(this.watch(group), epoch, pending);
    return out;
  }

  /** Settles an open future from a stored outcome; a pending task stays open. */
  #settleFrom(taskId: string, r: BatchResult): void {
    if (r.pending || r.status === "unknown") return;
    const f = this.#open.get(taskId);
    if (!f) return;
    this.forget(taskId);
    // Read from the service, not the stream: the hop hangs from the task's own root.
    const hop = TRACING
      ? startHop("sdk.result", heldHop(f), undefined, {
        "funcx.task_id": taskId,
        "funcx.read_from": "service",
      })
      : undefined;
    if (hop) f.onSettled(() => hop.end());
    if (r.error) f.setException(r.error);
    else f.setResult(r.result);
  }
}
