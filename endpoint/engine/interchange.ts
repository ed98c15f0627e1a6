/**
 * The interchange: the engine's side in the endpoint daemon. It queues the daemon's tasks
 * (`waiting-for-nodes`), listens for managers on TCP and checks each one's secret, or attaches
 * a manager that runs in the daemon itself over an in-memory link
 * ({@linkcode Interchange.attachLocal}); it hands tasks to managers by free capacity plus a
 * bounded prefetch (`waiting-for-launch`), in one batch per manager per tick; a task for a
 * container image goes where a worker in it is warm ({@link ./warm_routing.ts}). A manager that
 * goes silent past the heartbeat threshold, or whose connection drops, is lost: its tasks are
 * retried (up to `maxRetries`) or fail with `ManagerLost`. A task whose worker died
 * (`WorkerLost`) is retried the same way, up to `maxSystemRetries`; its result then says how
 * many attempts it took.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  ActorName,
  nowNs,
  type ResultMessage,
  TaskState,
  type TaskTransition,
} from "../../sdk/protocol/mod.ts";
import { type EngineStatus, PoolClosed } from "./engine.ts";
import { failureResult } from "./failure.ts";
import { type Link, memoryLinks, tcpLink } from "./manager_link.ts";
import {
  checkSecret,
  type FromManager,
  MANAGER_PROTOCOL_VERSION,
  randomHex,
  type ToManager,
  type WireTask,
} from "./manager_protocol.ts";
import { HOLD, ManagerPicker, WarmKinds } from "./warm_routing.ts";
import type { ResourceSpecificationWire } from "../../sdk/protocol/resource_specification.ts";

const log = getLogger(["funcx", "endpoint", "interchange"]);

/** Options of {@linkcode Interchange.start}. */
export interface InterchangeOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on (0: any free one). */
  port: number;
  /** The per-endpoint secret managers must prove. */
  secret: string;
  /** Seconds between heartbeats to managers. */
  heartbeatPeriodS: number;
  /** Seconds of silence before a manager is lost. */
  heartbeatThresholdS: number;
  /** Tasks a manager may hold beyond its worker count. */
  prefetch: number;
  /** Times a task is retried when its manager is lost. */
  maxRetries: number;
  /**
   * Times a task is retried when its worker, manager or block is lost (whichever of this and
   * `maxRetries` is larger applies to a lost manager). @default 0
   */
  maxSystemRetries?: number;
  /** Hears manager events (ready, workers, fatal, lost). */
  onEvent?: (event: ManagerEvent) => void;
}

/** Something that happened to a manager. */
export type ManagerEvent =
  | { type: "ready"; managerId: string; blockId: string; workers: number }
  | { type: "workers"; managerId: string; blockId: string; workers: number }
  | { type: "fatal"; managerId: string; blockId: string; message: string }
  | { type: "lost"; managerId: string; blockId: string; reason: string };

interface Task {
  readonly taskId: string;
  readonly buffer: string;
  readonly container: string | undefined;
  /** What an MPI task asks for; absent for the default. */
  readonly resourceSpecification: ResourceSpecificationWire | undefined;
  readonly promise: Promise<ResultMessage>;
  readonly resolve: (r: ResultMessage) => void;
  readonly reject: (err: Error) => void;
  readonly statuses: TaskTransition[];
  /** Times the task was handed to a manager. */
  attempts: number;
  manager: ManagerConn | undefined;
  cancelRequested: boolean;
}

interface ManagerConn {
  readonly id: string;
  readonly blockId: string;
  /** TCP frames to a manager process, or an in-memory link to one in this process. */
  readonly link: Link<ToManager, FromManager>;
  readonly inflight: Map<string, Task>;
  state: "starting" | "ready" | "lost";
  capacity: number;
  /** Tasks its busy workers can take beyond their current one (its `ahead` frame). */
  ahead: number;
  /** The container images it has workers in (reported), or tasks for (sent). */
  readonly kinds: WarmKinds;
  lastHeard: number;
  lastSent: number;
}

/** Lifecycle of the interchange. */
export type InterchangeState = "running" | "draining" | "stopped";

/** Queues tasks and dispatches them to managers. */
export class Interchange {
  readonly #o: InterchangeOptions;
  readonly #listener: Deno.TcpListener;
  readonly #tasks = new Map<string, Task>();
  #queue: Task[] = [];
  #queueHead = 0;
  readonly #managers = new Map<string, ManagerConn>();
  readonly #handlers = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  readonly #tick: ReturnType<typeof setInterval>;
  #dispatchScheduled = false;
  #rr = 0;
  #state: InterchangeState = "running";

  private constructor(options: InterchangeOptions) {
    this.#o = options;
    this.#listener = Deno.listen({ hostname: options.hostname, port: options.port });
    this.#accepting = this.#accept();
    const tickS = Math.min(options.heartbeatPeriodS, options.heartbeatThresholdS / 4);
    this.#tick = setInterval(() => this.#onTick(), Math.max(50, tickS * 1000));
  }

  /** Starts listening. */
  static start(options: InterchangeOptions): Interchange {
    return new Interchange(options);
  }

  /** Where managers connect. */
  get address(): { hostname: string; port: number } {
    const a = this.#listener.addr;
    return { hostname: a.hostname, port: a.port };
  }

  /** Current lifecycle state. */
  get state(): InterchangeState {
    return this.#state;
  }

  /**
   * Queues a task (to run in the container image `container`, if given; an MPI task with its
   * resource specification); resolves with its result.
   */
  submit(
    taskId: string,
    buffer: string,
    container?: string,
    resourceSpecification?: ResourceSpecificationWire,
  ): Promise<ResultMessage> {
    if (this.#state !== "running") return Promise.reject(new PoolClosed(taskId));
    const known = this.#tasks.get(taskId);
    if (known) return known.promise;
    const { promise, resolve, reject } = Promise.withResolvers<ResultMessage>();
    const task: Task = {
      taskId,
      buffer,
      container,
      resourceSpecification,
      promise,
      resolve,
      reject,
      statuses: [{
        timestamp: nowNs(),
        state: TaskState.WAITING_FOR_NODES,
        actor: ActorName.INTERCHANGE,
      }],
      attempts: 0,
      manager: undefined,
      cancelRequested: false,
    };
    this.#tasks.set(taskId, task);
    this.#queue.push(task);
    this.#scheduleDispatch();
    return promise;
  }

  /** Cancels a queued or running task. */
  cancel(taskId: string): boolean {
    const task = this.#tasks.get(taskId);
    if (!task) return false;
    task.cancelRequested = true;
    if (task.manager) {
      task.manager.link.send({ type: "cancel", task_id: taskId });
    } else {
      // Still queued: it stays in the queue array but is skipped, as it is no longer in #tasks.
      this.#tasks.delete(taskId);
      task.resolve(failureResult(
        taskId,
        "TaskCancelled",
        `Task "${taskId}" was cancelled before it started`,
        task.statuses,
        ActorName.INTERCHANGE,
      ));
    }
    return true;
  }

  /** Tasks queued or held by managers (not yet finished). */
  outstanding(): number {
    return this.#tasks.size;
  }

  /** Counts for status reports. */
  status(): EngineStatus {
    let managers = 0;
    let total = 0;
    let idle = 0;
    let inflight = 0;
    for (const m of this.#managers.values()) {
      if (m.state !== "ready") continue;
      managers++;
      total += m.capacity;
      idle += Math.max(0, m.capacity - m.inflight.size);
      inflight += m.inflight.size;
    }
    return {
      managers,
      total_workers: total,
      idle_workers: idle,
      pending_tasks: this.#tasks.size - inflight,
    };
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const h = this.#serve(conn).catch((err) =>
          log.warn("Manager connection failed: {err}", { err: String(err) })
        ).finally(() => this.#handlers.delete(h));
        this.#handlers.add(h);
      }
    } catch (err) {
      if (this.#state === "running") log.error("Interchange stopped listening: {err}", { err });
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    (conn as Deno.TcpConn).setNoDelay(true);
    const link = tcpLink<ToManager, FromManager>(conn);
    const nonce = randomHex(16);
    link.send({ type: "hello", protocol: MANAGER_PROTOCOL_VERSION, nonce });
    const peer = `${(conn.remoteAddr as Deno.NetAddr).hostname}:${
      (conn.remoteAddr as Deno.NetAddr).port
    }`;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const first = await Promise.race([
      link.messages.next().then((r) => r.value as FromManager | undefined, () => undefined),
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 10_000))),
    ]);
    clearTimeout(timer);
    const refuse = async (reason: string) => {
      log.warn("Refused a manager from {peer}: {reason}", { peer, reason });
      link.send({ type: "refused", reason });
      await link.close();
    };
    if (first?.type !== "register") return await refuse("no registration");
    if (first.protocol !== MANAGER_PROTOCOL_VERSION) {
      return await refuse(`protocol ${first.protocol}, expected ${MANAGER_PROTOCOL_VERSION}`);
    }
    if (!(await checkSecret(this.#o.secret, nonce, first.hmac))) {
      return await refuse(`wrong secret for manager "${first.manager_id}"`);
    }
    if (this.#state !== "running") return await refuse("interchange is shutting down");
    if (this.#managers.has(first.manager_id)) {
      return await refuse(`manager "${first.manager_id}" is already connected`);
    }
    const m = this.#add(first.manager_id, first.block_id, link);
    link.send({ type: "welcome" });
    log.info("Manager {id} (block {block}, pid {pid} on {host}) connected", {
      id: m.id,
      block: m.blockId,
      pid: first.pid,
      host: first.hostname,
    });
    await this.#read(m);
  }

  /**
   * Attaches a manager that runs in this process (a local block): it needs no socket and no
   * secret, and gets the other side of an in-memory link, to serve with `Manager.serve`.
   */
  attachLocal(managerId: string, blockId: string): Link<FromManager, ToManager> {
    if (this.#state !== "running") throw new Error("The interchange is shutting down");
    if (this.#managers.has(managerId)) {
      throw new Error(`Manager "${managerId}" is already connected`);
    }
    const [ours, theirs] = memoryLinks<ToManager, FromManager>();
    const m = this.#add(managerId, blockId, ours);
    log.info("Manager {id} (block {block}) attached in this process", {
      id: m.id,
      block: m.blockId,
    });
    const h = this.#read(m).finally(() => this.#handlers.delete(h));
    this.#handlers.add(h);
    return theirs;
  }

  #add(id: string, blockId: string, link: Link<ToManager, FromManager>): ManagerConn {
    const m: ManagerConn = {
      id,
      blockId,
      link,
      inflight: new Map(),
      state: "starting",
      capacity: 0,
      ahead: 0,
      kinds: new WarmKinds(),
      lastHeard: Date.now(),
      lastSent: Date.now(),
    };
    this.#managers.set(m.id, m);
    return m;
  }

  /** Reads a manager's messages until its link ends; it is then lost. */
  async #read(m: ManagerConn): Promise<void> {
    try {
      for await (const msg of m.link.messages) {
        m.lastHeard = Date.now();
        if (msg.type === "results") {
          for (const r of msg.results) this.#complete(m, r);
          this.#scheduleDispatch();
        } else if (msg.type === "ready") {
          m.capacity = msg.workers;
          m.state = "ready";
          this.#o.onEvent?.({
            type: "ready",
            managerId: m.id,
            blockId: m.blockId,
            workers: m.capacity,
          });
          this.#scheduleDispatch();
        } else if (msg.type === "workers") {
          m.capacity = msg.workers;
          this.#o.onEvent?.({
            type: "workers",
            managerId: m.id,
            blockId: m.blockId,
            workers: m.capacity,
          });
          this.#scheduleDispatch();
        } else if (msg.type === "warm") {
          m.kinds.report(msg.kinds);
        } else if (msg.type === "ahead") {
          m.ahead = Number.isInteger(msg.slots) && msg.slots > 0 ? msg.slots : 0;
          this.#scheduleDispatch();
        } else if (msg.type === "fatal") {
          log.error("Manager {id} failed: {message}", { id: m.id, message: msg.message });
          this.#o.onEvent?.({
            type: "fatal",
            managerId: m.id,
            blockId: m.blockId,
            message: msg.message,
          });
        }
      }
    } catch {
      // connection reset: handled as a lost manager below
    }
    this.#lost(m, "its connection closed");
  }

  #complete(m: ManagerConn, r: ResultMessage): void {
    const task = m.inflight.get(r.task_id);
    if (!task) return;
    m.inflight.delete(r.task_id);
    if (task.container !== undefined) m.kinds.done(task.container);
    if (r.error_details?.code === "WorkerLost" && this.#mayRetry(task, this.#systemRetries())) {
      // The lost run's transitions stay in the record; the task queues again, first in line.
      // (The manager's result holds only the transitions recorded there.)
      task.statuses.push(...(r.task_statuses ?? []).filter((t) => t.state !== TaskState.FAILED));
      log.warn("Task {id} lost its worker on attempt {n}; running it again", {
        id: task.taskId,
        n: task.attempts,
      });
      this.#requeue([task]);
      return;
    }
    this.#tasks.delete(r.task_id);
    r.task_statuses = [...task.statuses, ...(r.task_statuses ?? [])];
    if (task.attempts > 1) {
      r.attempts = task.attempts;
      if (r.error_details) r.error_details.user_message += ` (after ${task.attempts} attempts)`;
    }
    task.resolve(r);
  }

  #systemRetries(): number {
    return this.#o.maxSystemRetries ?? 0;
  }

  /** Whether `task` may run again after a system failure, `limit` retries allowed. */
  #mayRetry(task: Task, limit: number): boolean {
    return this.#state === "running" && !task.cancelRequested && task.attempts <= limit;
  }

  /** Puts tasks back at the head of the queue, each with a new `waiting-for-nodes` transition. */
  #requeue(tasks: Task[]): void {
    for (const task of tasks) {
      task.manager = undefined;
      task.statuses.push({
        timestamp: nowNs(),
        state: TaskState.WAITING_FOR_NODES,
        actor: ActorName.INTERCHANGE,
      });
    }
    this.#queue = [...tasks, ...this.#queue.slice(this.#queueHead)];
    this.#queueHead = 0;
    this.#scheduleDispatch();
  }

  #lost(m: ManagerConn, reason: string): void {
    if (m.state === "lost") return;
    m.state = "lost";
    this.#managers.delete(m.id);
    m.link.abort();
    if (this.#state !== "running") return;
    log.error("Manager {id} (block {block}) lost: {reason}", {
      id: m.id,
      block: m.blockId,
      reason,
    });
    const retry: Task[] = [];
    const limit = Math.max(this.#o.maxRetries, this.#systemRetries());
    for (const task of m.inflight.values()) {
      task.manager = undefined;
      if (this.#mayRetry(task, limit)) {
        retry.push(task);
        continue;
      }
      this.#tasks.delete(task.taskId);
      const after = task.attempts > 1 ? ` (after ${task.attempts} attempts)` : "";
      const failed = failureResult(
        task.taskId,
        task.cancelRequested ? "TaskCancelled" : "ManagerLost",
        `Manager "${m.id}" (block ${m.blockId}) was lost while holding task "${task.taskId}": ` +
          reason + after,
        task.statuses,
        ActorName.INTERCHANGE,
      );
      if (task.attempts > 1) failed.attempts = task.attempts;
      task.resolve(failed);
    }
    m.inflight.clear();
    if (retry.length > 0) this.#requeue(retry);
    this.#o.onEvent?.({ type: "lost", managerId: m.id, blockId: m.blockId, reason });
    this.#scheduleDispatch();
  }

  #onTick(): void {
    const now = Date.now();
    for (const m of [...this.#managers.values()]) {
      if (now - m.lastHeard > this.#o.heartbeatThresholdS * 1000) {
        this.#lost(m, `no heartbeat for over ${this.#o.heartbeatThresholdS} s`);
      } else if (now - m.lastSent >= this.#o.heartbeatPeriodS * 1000) {
        m.lastSent = now;
        m.link.send({ type: "heartbeat" });
      }
    }
  }

  #scheduleDispatch(): void {
    if (this.#dispatchScheduled) return;
    this.#dispatchScheduled = true;
    queueMicrotask(() => {
      this.#dispatchScheduled = false;
      this.#dispatch();
    });
  }

  #nextQueued(): Task | undefined {
    while (this.#queueHead < this.#queue.length) {
      const t = this.#queue[this.#queueHead++]!;
      if (this.#tasks.get(t.taskId) === t && !t.manager) return t;
    }
    return undefined;
  }

  #dispatch(): void {
    if (this.#state !== "running") return;
    const ready = [...this.#managers.values()].filter((m) => m.state === "ready");
    if (ready.length === 0 || this.#queueHead >= this.#queue.length) return;
    const start = this.#rr++ % ready.length;
    const picker = new ManagerPicker([...ready.slice(start), ...ready.slice(0, start)]);
    const batches = new Map<ManagerConn, WireTask[]>();
    const assign = (m: ManagerConn, t: Task) => {
      t.manager = m;
      t.attempts++;
      m.inflight.set(t.taskId, t);
      if (t.container !== undefined) m.kinds.sent(t.container);
      t.statuses.push({
        timestamp: nowNs(),
        state: TaskState.WAITING_FOR_LAUNCH,
        actor: ActorName.INTERCHANGE,
      });
      let batch = batches.get(m);
      if (!batch) batches.set(m, batch = []);
      const wire: WireTask = t.container === undefined
        ? { task_id: t.taskId, buffer: t.buffer }
        : { task_id: t.taskId, buffer: t.buffer, container: t.container };
      if (t.resourceSpecification) wire.resource_specification = t.resourceSpecification;
      batch.push(wire);
    };
    // Free workers first, managers taking turns; a task for an image some manager is warm in
    // waits (held) for the prefetch round rather than start a container elsewhere. Holding more
    // tasks than all prefetch slots together would only scan the queue for nothing.
    let room = 0;
    for (const m of ready) {
      room += Math.max(0, m.capacity + this.#o.prefetch + m.ahead - m.inflight.size);
    }
    const held: Task[] = [];
    for (let t = this.#nextQueued(); t; t = this.#nextQueued()) {
      const m = picker.pick(t.container, 0, true);
      if (m !== HOLD && m !== undefined) {
        assign(m, t);
        continue;
      }
      held.push(t);
      if (m === undefined || held.length >= room) break;
    }
    // Then prefetch slots, held tasks first; what finds no room goes back to the queue's head.
    let h = 0;
    const next = () => h < held.length ? held[h++] : this.#nextQueued();
    for (let t = next(); t; t = next()) {
      const m = picker.pick(t.container, this.#o.prefetch, false, true);
      if (m === undefined || m === HOLD) {
        this.#unshift([t, ...held.slice(h)]);
        break;
      }
      assign(m, t);
    }
    for (const [m, tasks] of batches) m.link.send({ type: "tasks", tasks });
    if (this.#queueHead >= this.#queue.length) {
      // Drained: drop the handed-out tasks (buffers, statuses) the array still points to.
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
  }

  /**
   * Puts `tasks`, taken from the queue in this dispatch, back at its head in their order: the
   * slots before the head are free (each held one of this dispatch's tasks).
   */
  #unshift(tasks: Task[]): void {
    for (let i = tasks.length - 1; i >= 0; i--) this.#queue[--this.#queueHead] = tasks[i]!;
  }

  /**
   * Stops taking tasks, waits up to `graceS` for tasks on managers, tells managers to shut down,
   * and rejects what has not finished with {@linkcode PoolClosed}; idempotent.
   */
  async close(graceS = 5): Promise<void> {
    if (this.#state !== "running") return;
    this.#state = "draining";
    this.#listener.close();
    await this.#accepting;
    const deadline = Date.now() + graceS * 1000;
    const busy = () => [...this.#managers.values()].some((m) => m.inflight.size > 0);
    while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const task of this.#tasks.values()) task.reject(new PoolClosed(task.taskId));
    this.#tasks.clear();
    for (const m of this.#managers.values()) {
      m.inflight.clear();
      m.link.send({ type: "shutdown" });
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, graceS * 1000)));
    await Promise.race([Promise.all(this.#handlers), grace]);
    clearTimeout(timer);
    for (const m of this.#managers.values()) this.#lost(m, "interchange closed");
    await Promise.all(this.#handlers);
    clearInterval(this.#tick);
    this.#state = "stopped";
  }
}
