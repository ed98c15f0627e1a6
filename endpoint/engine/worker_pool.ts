/**
 * A manager's pool of Deno worker subprocesses. Tasks wait in a FIFO queue until a worker is
 * idle; each worker runs one task at a time. A worker that dies fails its task (`WorkerLost`, or
 * `TaskWalltimeExceeded` / `TaskCancelled` when the pool killed it on purpose) and is replaced,
 * and its accelerator goes back to the free list first so the replacement can have it. Workers
 * of a container image start when its tasks wait, in place of idle workers nobody waits for.
 * One worker subprocess (spawn, frames, memory, death) is a {@linkcode WorkerProcess}.
 *
 * Tasks are sent ahead while they wait with no worker free. A worker whose last task ran under
 * {@linkcode AHEAD_MAX_RUN_MS} is sent up to `sendAhead` more behind the one it runs, so that
 * a burst of short tasks costs a worker one wake-up for several of them instead of one each; if
 * its current task runs longer than that, the pool takes those behind it back (`skip`) and gives
 * them to the next free worker. Any other busy worker is sent one, which it starts the moment its
 * task ends, with no round trip to the pool in between; that one is taken back as soon as a worker
 * goes free while it still waits, or a task that came after it goes to a free worker first, so
 * a long task never holds up one behind it while another worker could run it. A task sent ahead
 * counts as started only once the task before it ends. A task cancelled while sent ahead is taken
 * back the same way and never runs; a worker that dies returns the tasks sent ahead to the queue
 * (they never started), and fails only the one it ran.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ActorName, nowNs, type ResultMessage, TaskState } from "../../sdk/protocol/mod.ts";
import { type EngineFailure, failureResult } from "./failure.ts";
import { type PoolTask, TaskQueue } from "./task_queue.ts";
import { spawnWorker, type WorkerProcess } from "./worker_process.ts";
import { AHEAD_MAX_RUN_MS, SEND_AHEAD } from "./send_ahead.ts";

const log = getLogger(["funcx", "endpoint", "pool"]);

/** Options of {@linkcode WorkerPool.start}. */
export interface WorkerPoolOptions {
  /** Number of worker subprocesses. */
  workers: number;
  /** Command line that starts one worker. */
  command: readonly string[];
  /** Directory for the `worker_<n>.log` files (created). */
  logDir: string;
  /** Called with each finished task's result (failures included). */
  onResult: (result: ResultMessage) => void;
  /** Environment of the workers. @default this process's */
  env?: Record<string, string>;
  /** Accelerator ids; each worker is pinned to one. @default [] */
  accelerators?: readonly string[];
  /** Seconds a task may run before its worker is killed. @default null (no limit) */
  walltimeS?: number | null;
  /**
   * Memory limit of each worker in MiB (`mem_per_worker`): a worker whose resident memory goes
   * over it while running a task is killed and the task fails with `WorkerLost`, saying so. This
   * holds in a compiled binary too, where V8's heap limit cannot be set per worker. @default null
   */
  memLimitMb?: number | null;
  /** Milliseconds between checks of running workers' resident memory. @default 200 */
  memCheckMs?: number;
  /** Seconds a worker may take to say hello. @default 30 */
  startTimeoutS?: number;
  /**
   * Workers that may be starting at once: hundreds of Deno processes started together share the
   * cores for seconds and none says hello before most are done, while a few at a time start in
   * the same total time and the first are ready at once. @default {@linkcode WorkerPool.startWave}
   */
  startConcurrency?: number;
  /**
   * How many workers {@linkcode WorkerPool.start} waits for; the others keep starting while the
   * first run tasks, and `onWorkers` hears each one. @default `workers` (every one)
   */
  readyWorkers?: number;
  /**
   * Hears the number of ready workers each time it grows past what it has heard (the workers
   * still starting when {@linkcode WorkerPool.start} returned). @default none
   */
  onWorkers?: ((ready: number) => void) | undefined;
  /** Seconds `close()` waits for running tasks before killing workers. @default 5 */
  graceS?: number;
  /**
   * Most tasks a worker is sent beyond the one it runs, while tasks wait and its tasks are short
   * (see the module doc); 0 sends each task only to an idle worker. @default {@linkcode SEND_AHEAD}
   */
  sendAhead?: number;
  /** Whether workers may have transparent huge pages (see `huge_pages.ts`). @default false */
  hugePages?: boolean;
  /**
   * Milliseconds a worker's last task may have run for it to be sent tasks ahead, and its
   * current one may run before those are taken back. @default {@linkcode AHEAD_MAX_RUN_MS}
   */
  aheadMaxRunMs?: number;
  /**
   * Hears how many tasks the pool's busy workers can take ahead (the workers whose last task was
   * short, times `sendAhead`) each time that changes. @default none
   */
  onAheadSlots?: ((slots: number) => void) | undefined;
  /**
   * Command line that starts a worker inside the container image `location`; without it, tasks
   * that need a container fail with `ContainerUnavailable`. @default undefined
   */
  containerCommand?: ((location: string) => string[]) | undefined;
  /** Seconds a worker in a container may take to say hello (an image may be pulled). @default 300 */
  containerStartTimeoutS?: number;
  /**
   * Hears the container images this pool has ready workers in, each time that set changes (the
   * manager tells the interchange, which sends such tasks where a worker is warm). @default none
   */
  onWarmKinds?: ((kinds: string[]) => void) | undefined;
}

/** Lifecycle of the pool. */
export type PoolState = "starting" | "running" | "draining" | "stopped";

/** A pool of worker subprocesses, owned by one manager. */
export class WorkerPool {
  readonly #opts: Required<WorkerPoolOptions>;
  /** Waiting tasks by kind: `""` for plain workers, else a container image. */
  readonly #queues = new Map<string, TaskQueue>([["", new TaskQueue()]]);
  /** Idle workers by kind. */
  readonly #idle = new Map<string, WorkerProcess[]>([["", []]]);
  /** Workers starting (or about to, in place of a switching one), by kind. */
  readonly #coming = new Map<string, number>();
  readonly #workers = new Set<WorkerProcess>();
  readonly #running = new Map<string, WorkerProcess>();
  /** Tasks sent ahead to a worker and not started, by id. */
  readonly #aheadAt = new Map<string, WorkerProcess>();
  /** Tasks a `skip` was sent for, not answered yet. */
  readonly #skipping = new Set<string>();
  /** Tasks cancelled while a `skip` decides whether they had started. */
  readonly #cancelWanted = new Set<string>();
  readonly #stats = { sentAhead: 0, takenBack: 0 };
  /** Busy workers with nothing sent ahead: those to send tasks ahead. */
  readonly #aheadable = new Set<WorkerProcess>();
  #dispatchSoon = false;
  /** Workers whose last task was short enough to be sent tasks ahead. */
  #fit = 0;
  #slotsHeard = 0;
  #slotsSoon = false;
  /** Tasks numbered in the order they were submitted (to put back those taken back). */
  readonly #arrival = new WeakMap<PoolTask, number>();
  #arrived = 0;
  readonly #freeAccelerators: string[];
  #next = 0;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #state: PoolState = "starting";
  #memTimer: ReturnType<typeof setInterval> | undefined;
  #warm = "";
  /** Workers of the initial count not spawned yet. */
  #toStart = 0;
  /** The initial workers' start-up, settled when each has started or failed. */
  #ramp: Promise<unknown> = Promise.resolve();
  /** Ready workers `onWorkers` has heard of. */
  #heardReady = 0;

  private constructor(options: WorkerPoolOptions) {
    this.#opts = {
      containerCommand: undefined,
      containerStartTimeoutS: 300,
      onWarmKinds: undefined,
      startConcurrency: WorkerPool.startWave,
      readyWorkers: options.workers,
      onWorkers: undefined,
      env: Deno.env.toObject(),
      accelerators: [],
      walltimeS: null,
      memLimitMb: null,
      memCheckMs: 200,
      startTimeoutS: 30,
      graceS: 5,
      sendAhead: SEND_AHEAD,
      hugePages: false,
      aheadMaxRunMs: AHEAD_MAX_RUN_MS,
      onAheadSlots: undefined,
      ...options,
    };
    this.#freeAccelerators = [...this.#opts.accelerators];
    if (!Number.isInteger(options.workers) || options.workers < 1) {
      throw new RangeError(`Invalid worker count ${options.workers}: expected a whole number >= 1`);
    }
    const ahead = this.#opts.sendAhead;
    if (!Number.isInteger(ahead) || ahead < 0) {
      throw new RangeError(`Invalid sendAhead ${ahead}: expected a whole number >= 0`);
    }
    for (const key of ["startConcurrency", "readyWorkers"] as const) {
      const v = this.#opts[key];
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`Invalid ${key} ${v}: expected a whole number >= 1`);
      }
    }
  }

  /**
   * Starts the pool's workers, a few at a time (`startConcurrency`), and waits until
   * `readyWorkers` of them (by default every one) have said hello; the rest keep starting. A
   * worker that fails to start before then fails the start; after it, the failure is logged and
   * the worker replaced like one that died.
   */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(options);
    if (pool.#opts.memLimitMb !== null) {
      pool.#memTimer = setInterval(() => pool.#checkMemory(), pool.#opts.memCheckMs);
    }
    await Deno.mkdir(options.logDir, { recursive: true });
    const want = Math.min(options.workers, pool.#opts.readyWorkers);
    const enough = Promise.withResolvers<void>();
    pool.#toStart = options.workers;
    pool.#coming.set("", pool.#toStart);
    const runner = async () => {
      while (pool.#toStart > 0 && (pool.#state === "starting" || pool.#state === "running")) {
        pool.#toStart--;
        pool.#coming.set("", (pool.#coming.get("") ?? 1) - 1); // #spawn counts it from here
        try {
          await pool.#spawn("");
        } catch (err) {
          if (pool.#state === "starting") return enough.reject(err);
          if (pool.#state === "running") log.error("Cannot start a worker: {err}", { err });
          continue;
        }
        if (pool.readyCount >= want) enough.resolve();
      }
    };
    const t0 = Date.now();
    pool.#ramp = Promise.allSettled(
      Array.from({ length: Math.min(pool.#opts.startConcurrency, options.workers) }, runner),
    ).then(() => {
      if (pool.#state !== "running" || want >= options.workers) return;
      log.info("{n} of {total} workers up after {s} s", {
        n: pool.readyCount,
        total: options.workers,
        s: (Date.now() - t0) / 1000,
      });
    });
    try {
      await enough.promise;
    } catch (err) {
      await pool.close();
      throw err;
    }
    pool.#state = "running";
    pool.#heardReady = pool.readyCount;
    pool.#dispatch();
    return pool;
  }

  /**
   * Workers started at once by default (`startConcurrency`): four per core. A
   * manager says it is ready once that many are up.
   */
  static get startWave(): number {
    return Math.max(4, 4 * navigator.hardwareConcurrency);
  }

  /** Workers of the initial count not spawned yet. */
  get startingCount(): number {
    return this.#toStart;
  }

  /** Current lifecycle state. */
  get state(): PoolState {
    return this.#state;
  }

  /** Live workers. */
  get workerCount(): number {
    return this.#workers.size;
  }

  /** Live workers that have said hello. */
  get readyCount(): number {
    let n = 0;
    for (const w of this.#workers) if (w.isReady) n++;
    return n;
  }

  /** Idle workers. */
  get idleCount(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /** Tasks waiting for a worker. */
  get pendingCount(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.size;
    return n;
  }

  /** Tasks sent ahead to a busy worker, and tasks sent ahead that were taken back, so far. */
  get stats(): { sentAhead: number; takenBack: number } {
    return { ...this.#stats };
  }

  /** Live workers by kind (`""`: plain; else the container image). */
  get workerKinds(): Map<string, number> {
    const out = new Map<string, number>();
    for (const w of this.#workers) out.set(w.kind, (out.get(w.kind) ?? 0) + 1);
    return out;
  }

  #queueOf(kind: string): TaskQueue {
    let q = this.#queues.get(kind);
    if (!q) this.#queues.set(kind, q = new TaskQueue());
    return q;
  }

  #idleOf(kind: string): WorkerProcess[] {
    let list = this.#idle.get(kind);
    if (!list) this.#idle.set(kind, list = []);
    return list;
  }

  /** Starts a worker of `kind`; a container worker that cannot start fails its kind's tasks. */
  async #spawn(kind: string): Promise<void> {
    this.#coming.set(kind, (this.#coming.get(kind) ?? 0) + 1);
    try {
      await this.#startWorker(kind);
    } catch (err) {
      if (kind === "") throw err;
      // The image could not start a worker: say why to every task waiting for it, and keep the
      // pool at full strength with a plain worker instead.
      const runtime = this.#opts.containerCommand?.(kind)[0] ?? "no runtime";
      const message = `Cannot start a worker in container "${kind}" with ${runtime}: ` +
        (err as Error).message;
      log.error("{message}", { message });
      const q = this.#queues.get(kind);
      for (let t = q?.shift(); t; t = q?.shift()) {
        this.#opts.onResult(failureResult(t.task_id, "ContainerUnavailable", message, t.statuses));
      }
      if (this.#state === "running") await this.#startWorker("");
    } finally {
      this.#coming.set(kind, (this.#coming.get(kind) ?? 1) - 1);
    }
  }

  async #startWorker(kind: string): Promise<void> {
    const n = this.#next++;
    const accelerator = this.#opts.accelerators.length > 0
      ? this.#freeAccelerators.shift()
      : undefined;
    if (this.#opts.accelerators.length > 0 && accelerator === undefined) {
      throw new Error(`No free accelerator for worker ${n}`);
    }
    let w: WorkerProcess;
    try {
      w = await spawnWorker({
        n,
        kind,
        command: kind === "" ? this.#opts.command : this.#opts.containerCommand?.(kind),
        env: this.#opts.env,
        accelerator,
        logDir: this.#opts.logDir,
        hugePages: this.#opts.hugePages,
        refusal: () => {
          if (this.#state === "draining" || this.#state === "stopped") {
            return `Worker pool is ${this.#state}`;
          }
          if (kind !== "" && !this.#opts.containerCommand) {
            return "this endpoint runs no containers (engine.container_type is unset)";
          }
          return undefined;
        },
        onResult: (w, r) => this.#done(w, r),
        onSkipped: (w, id, skipped) => this.#skipped(w, id, skipped),
      });
    } catch (err) {
      if (accelerator !== undefined) this.#freeAccelerators.push(accelerator);
      throw err;
    }
    if (this.#state === "draining" || this.#state === "stopped") {
      // `close()` came while it was being spawned, and does not know it.
      w.kill();
      await w.exited.catch(() => {});
      if (accelerator !== undefined) this.#freeAccelerators.push(accelerator);
      throw new Error(`Worker pool is ${this.#state}`);
    }
    this.#workers.add(w);
    const startedAt = Date.now();
    w.settled = w.exited.then((status) => this.#lost(w, status, Date.now() - startedAt));
    await w.started(
      kind === ""
        ? this.#opts.startTimeoutS
        : Math.max(this.#opts.startTimeoutS, this.#opts.containerStartTimeoutS),
    );
    this.#idleOf(kind).push(w);
    this.#reportWarm();
    if (this.#state === "running" && this.readyCount > this.#heardReady) {
      this.#heardReady = this.readyCount;
      this.#opts.onWorkers?.(this.#heardReady);
    }
    this.#dispatch();
  }

  /** Tells `onWarmKinds` the images with ready workers not on their way out, if they changed. */
  #reportWarm(): void {
    const kinds = new Set<string>();
    for (const w of this.#workers) {
      if (w.kind !== "" && w.isReady && w.switchTo === undefined) kinds.add(w.kind);
    }
    const sorted = [...kinds].sort();
    const key = sorted.join("\n");
    if (key === this.#warm) return;
    this.#warm = key;
    this.#opts.onWarmKinds?.(sorted);
  }

  /** Queues a task; its result goes to `onResult`. */
  submit(task: PoolTask): void {
    if (this.#state === "draining" || this.#state === "stopped") {
      this.#opts.onResult(
        failureResult(task.task_id, "WorkerLost", "Manager is shutting down", task.statuses),
      );
      return;
    }
    const kind = task.container ?? "";
    if (kind !== "" && !this.#opts.containerCommand) {
      this.#opts.onResult(
        failureResult(
          task.task_id,
          "ContainerUnavailable",
          `Task "${task.task_id}" must run in container "${kind}", but this endpoint runs no ` +
            "containers: set engine.container_type in its config.yaml",
          task.statuses,
        ),
      );
      return;
    }
    this.#arrival.set(task, this.#arrived++);
    this.#queueOf(kind).push(task);
    // Tasks submitted together (a batch from the interchange) are dispatched together, so a
    // worker is sent all its tasks ahead in one write.
    if (this.#dispatchSoon) return;
    this.#dispatchSoon = true;
    queueMicrotask(() => {
      this.#dispatchSoon = false;
      this.#dispatch();
    });
  }

  /** Cancels a queued or running task; `false` when the pool does not have it. */
  cancel(taskId: string): boolean {
    const running = this.#running.get(taskId);
    if (running) {
      // Taken back already: the answer says whether it had started (then it is killed).
      if (this.#skipping.has(taskId)) this.#cancelWanted.add(taskId);
      else this.#kill(running, "TaskCancelled", `Task "${taskId}" was cancelled while running`);
      return true;
    }
    const at = this.#aheadAt.get(taskId);
    if (at) {
      this.#cancelWanted.add(taskId);
      this.#skipOnce(at, taskId);
      return true;
    }
    for (const q of this.#queues.values()) {
      const t = q.remove(taskId);
      if (!t) continue;
      this.#returnTask(t, true);
      return true;
    }
    return false;
  }

  #dispatch(): void {
    for (const [kind, queue] of this.#queues) {
      const idle = this.#idle.get(kind);
      while (idle && idle.length > 0 && queue.size > 0) {
        const task = queue.shift()!;
        // A task sent ahead before this one should not wait behind a long task while this runs.
        this.#takeBackWaiting(kind, this.#arrival.get(task) ?? 0);
        this.#run(idle.pop()!, task);
      }
      // Workers free with nothing queued: tasks waiting behind a long task come back for them
      // (less those on their way back already).
      if (idle && idle.length > 0 && this.#aheadAt.size > 0) {
        let want = idle.length - this.#comingBack(kind);
        while (want-- > 0 && this.#takeBackWaiting(kind, Infinity));
      }
      // Every idle worker has a task first; then what still waits is sent ahead.
      if (queue.size > 0 && this.#aheadable.size > 0) this.#sendAhead(kind, queue);
    }
    this.#switchWorkers();
  }

  /** Tasks of `kind` taken back from behind a long task, not answered yet. */
  #comingBack(kind: string): number {
    let n = 0;
    for (const taskId of this.#skipping) {
      const w = this.#aheadAt.get(taskId);
      if (w && w.kind === kind && !w.fit) n++;
    }
    return n;
  }

  /**
   * Takes back (`skip`) the oldest task that waits behind a long task on a worker of `kind`, if
   * it arrived before `before`; whether there was one. Tasks behind a short one are the recall
   * timer's.
   */
  #takeBackWaiting(kind: string, before: number): boolean {
    if (this.#aheadAt.size === 0) return false;
    let oldest: { w: WorkerProcess; taskId: string; at: number } | undefined;
    for (const w of this.#workers) {
      if (w.kind !== kind || w.fit) continue;
      for (const t of w.ahead) {
        if (this.#skipping.has(t.task_id)) continue;
        const at = this.#arrival.get(t) ?? 0;
        if (at < before && (!oldest || at < oldest.at)) oldest = { w, taskId: t.task_id, at };
      }
    }
    if (!oldest) return false;
    this.#skipOnce(oldest.w, oldest.taskId);
    return true;
  }

  /**
   * Sends tasks of `queue` ahead, in turn, to the busy workers of `kind` with nothing sent ahead:
   * up to `sendAhead` to those whose last task was short, one to the others.
   */
  #sendAhead(kind: string, queue: TaskQueue): void {
    const max = this.#opts.sendAhead;
    if (max === 0 || this.#state !== "running") return;
    const busy = [...this.#aheadable].filter((w) =>
      w.kind === kind && w.current !== undefined && !w.killReason && w.switchTo === undefined
    );
    for (let sent = true; sent && queue.size > 0;) {
      sent = false;
      for (const w of busy) {
        if (queue.size === 0 || w.ahead.length >= (w.fit ? max : 1)) continue;
        const t = queue.shift()!;
        this.#aheadAt.set(t.task_id, w);
        w.sendAhead(t);
        this.#stats.sentAhead++;
        sent = true;
      }
    }
    for (const w of busy) {
      if (w.ahead.length > 0) this.#aheadable.delete(w);
      this.#armRecall(w);
    }
  }

  /** Takes a short-task worker's tasks sent ahead back once its current task runs long. */
  #armRecall(w: WorkerProcess): void {
    if (!w.fit || w.ahead.length === 0 || w.recallTimer !== undefined) return;
    const due = Math.max(0, w.currentSince + this.#opts.aheadMaxRunMs - performance.now());
    w.recallTimer = setTimeout(() => {
      w.recallTimer = undefined;
      for (const t of w.ahead) this.#skipOnce(w, t.task_id);
    }, due);
  }

  /**
   * Counts `w` as able to take tasks ahead or not; tells `onAheadSlots` when the slots changed,
   * once for all the changes of a turn (results come in batches).
   */
  #setFit(w: WorkerProcess, fit: boolean): void {
    if (w.fit === fit) return;
    w.fit = fit;
    this.#fit += fit ? 1 : -1;
    if (this.#slotsSoon) return;
    this.#slotsSoon = true;
    queueMicrotask(() => {
      this.#slotsSoon = false;
      const slots = this.#fit * this.#opts.sendAhead;
      if (slots === this.#slotsHeard || this.#state !== "running") return;
      this.#slotsHeard = slots;
      this.#opts.onAheadSlots?.(slots);
    });
  }

  #skipOnce(w: WorkerProcess, taskId: string): void {
    if (this.#skipping.has(taskId)) return;
    this.#skipping.add(taskId);
    w.skip(taskId);
  }

  /** The worker's answer to a `skip`: the task goes back to the queue, or is cancelled. */
  #skipped(w: WorkerProcess, taskId: string, skipped: boolean): void {
    if (!this.#skipping.delete(taskId)) return;
    const cancel = this.#cancelWanted.delete(taskId);
    if (!skipped) {
      // It had started (or ended): it runs on, unless it was cancelled.
      if (cancel && w.current?.task_id === taskId) {
        this.#kill(w, "TaskCancelled", `Task "${taskId}" was cancelled while running`);
      }
      return;
    }
    let task: PoolTask | undefined;
    if (w.current?.task_id === taskId) {
      // Taken as started when the task before it ended, but the worker skipped it.
      task = w.current;
      this.#stopTimers(w);
      w.current = undefined;
      this.#running.delete(taskId);
      if (task.statuses.at(-1)?.state === TaskState.RUNNING) task.statuses.pop();
      this.#goOn(w);
    } else {
      const i = w.ahead.findIndex((t) => t.task_id === taskId);
      if (i < 0) return;
      task = w.ahead.splice(i, 1)[0]!;
    }
    this.#aheadAt.delete(taskId);
    this.#stats.takenBack++;
    this.#returnTask(task, cancel);
    this.#dispatch();
  }

  /** A task that never started: failed as cancelled, or back to its place in its queue. */
  #returnTask(task: PoolTask, cancelled: boolean): void {
    if (cancelled) {
      this.#opts.onResult(
        failureResult(
          task.task_id,
          "TaskCancelled",
          `Task "${task.task_id}" was cancelled`,
          task.statuses,
        ),
      );
    } else {
      this.#queueOf(task.container ?? "").putBack(task, (t) => this.#arrival.get(t) ?? 0);
    }
  }

  #stopTimers(w: WorkerProcess): void {
    clearTimeout(w.timer);
    clearTimeout(w.recallTimer);
    w.recallTimer = undefined;
  }

  /** The worker goes on with the first task sent ahead to it, or is idle. */
  #goOn(w: WorkerProcess): void {
    const t = w.ahead.shift();
    if (!t) {
      this.#aheadable.delete(w);
      this.#idleOf(w.kind).push(w);
      return;
    }
    this.#aheadAt.delete(t.task_id);
    this.#track(w, t);
    w.began(t);
    this.#armRecall(w);
  }

  /**
   * When tasks of one kind wait with no worker of that kind free or coming, an idle worker of a
   * kind nobody is waiting for exits and a worker of the wanted kind starts in its place.
   */
  #switchWorkers(): void {
    if (this.#state !== "running") return;
    for (const [kind, queue] of this.#queues) {
      while (queue.size > (this.#coming.get(kind) ?? 0)) {
        const spare = this.#spareWorker(kind);
        if (!spare) break;
        spare.switchTo = kind;
        this.#coming.set(kind, (this.#coming.get(kind) ?? 0) + 1);
        log.info("Worker {n} ({from}) makes way for a worker in {to}", {
          n: spare.n,
          from: spare.kind || "plain",
          to: kind || "plain",
        });
        spare.askToExit();
        this.#reportWarm();
      }
    }
  }

  /** An idle worker of another kind whose own queue is empty, taken out of the idle lists. */
  #spareWorker(kind: string): WorkerProcess | undefined {
    for (const [other, idle] of this.#idle) {
      if (other === kind || idle.length === 0 || (this.#queues.get(other)?.size ?? 0) > 0) {
        continue;
      }
      return idle.pop();
    }
    return undefined;
  }

  #run(w: WorkerProcess, task: PoolTask): void {
    this.#track(w, task);
    w.run(task);
  }

  /** A task starts on `w`: its `running` transition, and its walltime. */
  #track(w: WorkerProcess, task: PoolTask): void {
    // Topped up only once it has started the last task sent ahead: one write of several tasks,
    // not one per task.
    if (w.ahead.length === 0) this.#aheadable.add(w);
    task.statuses.push({
      timestamp: nowNs(),
      state: TaskState.RUNNING,
      actor: ActorName.MANAGER,
    });
    this.#running.set(task.task_id, w);
    const walltime = this.#opts.walltimeS;
    if (walltime !== null) {
      w.timer = setTimeout(() =>
        this.#kill(
          w,
          "TaskWalltimeExceeded",
          `Task "${task.task_id}" exceeded its walltime of ${walltime} s; its worker was killed`,
        ), walltime * 1000);
    }
  }

  /** Kills each running worker whose resident memory is over `memLimitMb`. */
  #checkMemory(): void {
    const limit = this.#opts.memLimitMb;
    if (limit === null) return;
    for (const [taskId, w] of this.#running) {
      const mib = w.residentMib();
      if (mib === undefined || mib <= limit) continue;
      this.#kill(
        w,
        "WorkerLost",
        `Worker ${w.n} (pid ${w.pid}) was killed while running task "${taskId}": it ran out of ` +
          `memory (mem_per_worker limit ${limit} MiB), with ${Math.round(mib)} MiB resident`,
      );
    }
  }

  #kill(w: WorkerProcess, name: EngineFailure, message: string): void {
    w.killFor(name, message);
  }

  #done(w: WorkerProcess, result: ResultMessage): void {
    const task = w.current;
    if (!task || task.task_id !== result.task_id || w.killReason) return;
    this.#stopTimers(w);
    w.lastRunMs = performance.now() - w.currentSince;
    this.#setFit(w, w.lastRunMs < this.#opts.aheadMaxRunMs);
    w.current = undefined;
    this.#running.delete(task.task_id);
    result.task_statuses = [...task.statuses, ...(result.task_statuses ?? [])];
    this.#opts.onResult(result);
    this.#goOn(w);
    this.#dispatch();
  }

  async #lost(w: WorkerProcess, status: Deno.CommandStatus, livedMs: number): Promise<void> {
    this.#stopTimers(w);
    this.#aheadable.delete(w);
    this.#setFit(w, false);
    this.#workers.delete(w);
    this.#reportWarm();
    const idle = this.#idleOf(w.kind);
    const i = idle.indexOf(w);
    if (i >= 0) idle.splice(i, 1);
    // Tasks sent ahead never started: back to the queue, in order (or cancelled, if asked).
    const ahead = w.ahead.splice(0);
    for (const t of ahead.reverse()) {
      this.#aheadAt.delete(t.task_id);
      this.#skipping.delete(t.task_id);
      this.#returnTask(t, this.#cancelWanted.delete(t.task_id));
    }
    if (ahead.length > 0 && this.#state === "running") this.#dispatch();
    if (w.accelerator !== undefined) this.#freeAccelerators.push(w.accelerator);
    const task = w.current;
    w.current = undefined;
    if (task) {
      this.#running.delete(task.task_id);
      this.#skipping.delete(task.task_id);
      if (this.#cancelWanted.delete(task.task_id)) {
        w.killReason ??= {
          name: "TaskCancelled",
          message: `Task "${task.task_id}" was cancelled while running`,
        };
      }
      let name: EngineFailure = "WorkerLost";
      let message: string;
      if (w.killReason) {
        ({ name, message } = w.killReason);
      } else {
        message = await w.describeDeath(status, task.task_id, {
          waitOnSigterm: this.#state === "running",
          memLimitMb: this.#opts.memLimitMb,
        });
      }
      this.#opts.onResult(failureResult(task.task_id, name, message, task.statuses));
    }
    if (this.#state === "running" && w.switchTo !== undefined) {
      // It made way for a worker of another kind (counted as coming since the switch).
      const kind = w.switchTo;
      this.#coming.set(kind, (this.#coming.get(kind) ?? 1) - 1);
      this.#spawn(kind).catch((err) => log.error("Cannot start a worker: {err}", { err }));
    } else if (this.#state === "running" && (w.isReady || w.kind === "")) {
      // (A container worker that never said hello was replaced by a plain one in #spawn.)
      if (!w.killReason) log.warn("Worker {n} exited; starting a replacement", { n: w.n });
      // A worker that dies at start-up would otherwise be restarted in a tight loop.
      const delay = w.isReady && livedMs > 1000 ? 0 : 1000;
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        if (this.#state !== "running") return;
        this.#spawn(w.kind).catch((err) => log.error("Cannot replace a worker: {err}", { err }));
      }, delay);
      this.#timers.add(timer);
    }
  }

  /** Stops the workers (after their running task, within the grace period); idempotent. */
  async close(): Promise<void> {
    if (this.#state === "stopped" || this.#state === "draining") return;
    this.#state = "draining";
    for (const t of this.#timers) clearTimeout(t);
    clearInterval(this.#memTimer);
    const workers = [...this.#workers];
    for (const w of workers) w.askToExit();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, this.#opts.graceS * 1000)));
    await Promise.race([Promise.all(workers.map((w) => w.exited)), grace]);
    clearTimeout(timer);
    for (const w of workers) w.kill();
    await Promise.all(workers.map((w) => w.settled));
    // Workers of the initial count still being spawned stop (see #startWorker).
    await this.#ramp;
    for (const q of this.#queues.values()) {
      for (let t = q.shift(); t; t = q.shift()) {
        this.#opts.onResult(
          failureResult(t.task_id, "WorkerLost", "Manager shut down", t.statuses),
        );
      }
    }
    this.#state = "stopped";
  }
}
