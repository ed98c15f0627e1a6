/**
 * The high-throughput engine: an {@linkcode Interchange} in the daemon plus blocks of managers
 * started through a {@linkcode Provider}: for a local block by default a manager inside the
 * daemon that starts the workers itself (`in_process_provider.ts`), else a manager subprocess or
 * a Slurm or Grid Engine job. Every `strategy_period` it polls the provider and lets a
 * {@linkcode SimpleStrategy} decide how many blocks to start or stop: blocks that die are noticed
 * and replaced while work remains or `min_blocks` asks for them; idle blocks above `min_blocks`
 * are stopped after `max_idletime`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ResultMessage } from "../../sdk/protocol/mod.ts";
import { engineCommand } from "./command.ts";
import { backoffDelay } from "../../sdk/_backoff.ts";
import type { Engine, EngineStatus, SubmitContext } from "./engine.ts";
import { Interchange, type ManagerEvent } from "./interchange.ts";
import { type ManagerOptions, OPTIONS_ENV, SECRET_ENV } from "./manager.ts";
import { randomHex } from "./manager_protocol.ts";
import type { EngineConfig } from "./engine_config.ts";
import { containerSettings } from "./container.ts";
import { type BlockHandle, type BlockState, type Provider, TERMINAL_STATES } from "./provider.ts";
import { providerFromConfig } from "./provider_config.ts";
import { InProcessProvider } from "./in_process_provider.ts";
import { mpiProviderConfig } from "./mpi_launcher.ts";
import { SimpleStrategy } from "./strategy.ts";
import { fileTail } from "./file_tail.ts";

const log = getLogger(["funcx", "endpoint", "engine"]);

/** Options of the engine that do not come from the config file. */
export interface EngineOptions {
  /** Command line that starts one worker (tests). @default `engineCommand("worker", ...)` */
  workerCommand?: readonly string[];
  /**
   * Command line that starts one manager; given, local blocks run manager subprocesses even with
   * `local_manager: in_process`. @default `engineCommand("manager", ["-A"])`
   */
  managerCommand?: readonly string[];
  /** Where blocks of managers run. @default the config's `provider` */
  provider?: Provider;
  /**
   * Whether `start` waits for the `init_blocks` managers (and fails if they fail). Batch jobs
   * may queue for hours, so only the local provider waits. @default true for the local provider
   */
  waitForBlocks?: boolean;
  /** The per-endpoint secret. @default a random one */
  secret?: string;
  /** Seconds `close()` waits for running tasks before forcing. @default 5 */
  graceS?: number;
  /** Seconds the first managers may take to become ready. @default 60 */
  startTimeoutS?: number;
  /**
   * Hears that the count of live workers may have changed (a manager got ready, its workers came
   * up, or it was lost); `status()` has the count. @default none
   */
  onWorkersChanged?: () => void;
}

interface Block {
  handle: BlockHandle | undefined;
  managerId: string;
  ready: PromiseWithResolvers<void>;
  /** "submitting" until the provider took it. */
  state: BlockState | "submitting";
  /** Whether the engine stopped it (scale in, close): its end is not a failure. */
  stopping: boolean;
  /** Whether a manager of the block got ready. */
  hadManager: boolean;
}

/** Lifecycle of the engine. */
export type EngineState = "starting" | "running" | "draining" | "stopped";

/** Interchange + managers, as one {@linkcode Engine}. */
export class HighThroughputEngine implements Engine, AsyncDisposable {
  readonly #config: EngineConfig;
  readonly #options: EngineOptions;
  readonly #runDir: string;
  readonly #ownsRunDir: boolean;
  readonly #secret: string;
  readonly #provider: Provider;
  readonly #interchange: Interchange;
  readonly #blocks = new Map<string, Block>();
  readonly #stopping = new Set<Promise<void>>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  /** Block starts and exit watchers in progress, awaited by close(). */
  readonly #pending = new Set<Promise<unknown>>();
  #nextBlock = 0;
  #state: EngineState = "starting";
  readonly #strategy: SimpleStrategy;
  #tickTimer: ReturnType<typeof setTimeout> | undefined;
  #ticking: Promise<void> | undefined;
  #completed = 0;
  #failed = 0;
  #providerError: string | null = null;
  #submitFailures = 0;
  #submitAfter = 0;

  private constructor(config: EngineConfig, options: EngineOptions, runDir: string, owns: boolean) {
    this.#config = config;
    this.#options = options;
    this.#runDir = runDir;
    this.#ownsRunDir = owns;
    this.#secret = options.secret ?? randomHex();
    const inProcess = config.provider.type === "local" && config.local_manager === "in_process" &&
      options.managerCommand === undefined;
    this.#provider = options.provider ??
      (inProcess
        ? new InProcessProvider((managerId, blockId) =>
          this.#interchange.attachLocal(managerId, blockId)
        )
        : providerFromConfig(mpiProviderConfig(config.provider, config.mpi), {
          runDir,
          graceS: options.graceS ?? 5,
          nodesPerBlock: config.nodes_per_block,
        }));
    this.#strategy = new SimpleStrategy(config);
    this.#interchange = Interchange.start({
      hostname: config.address,
      port: config.port,
      secret: this.#secret,
      heartbeatPeriodS: config.heartbeat_period,
      heartbeatThresholdS: config.heartbeat_threshold,
      prefetch: config.prefetch_capacity,
      maxRetries: config.max_retries_on_manager_lost,
      maxSystemRetries: config.max_retries_on_system_failure,
      onEvent: (e) => this.#onEvent(e),
    });
  }

  /** Starts the interchange and the first managers, and waits until they are ready. */
  static async start(
    config: EngineConfig,
    options: EngineOptions = {},
  ): Promise<HighThroughputEngine> {
    const owns = config.run_dir === null;
    const runDir = config.run_dir ?? await Deno.makeTempDir({ prefix: "funcx-engine-" });
    await Deno.mkdir(runDir, { recursive: true });
    const engine = new HighThroughputEngine(config, options, runDir, owns);
    const wait = options.waitForBlocks ?? engine.#provider.label === "local";
    if (!wait) {
      await engine.#scaleOut(config.init_blocks);
      engine.#state = "running";
      engine.#scheduleTick(config.strategy_period * 1000);
      return engine;
    }
    try {
      const blocks = await Promise.all(
        Array.from({ length: config.init_blocks }, () => engine.#startBlock()),
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeoutS = options.startTimeoutS ?? 60;
      await Promise.race([
        Promise.all(blocks.map((b) => b.ready.promise)),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Managers were not ready within ${timeoutS} s`)),
            timeoutS * 1000,
          );
        }),
      ]).finally(() => clearTimeout(timer));
    } catch (err) {
      await engine.close();
      throw err;
    }
    engine.#state = "running";
    engine.#scheduleTick(config.strategy_period * 1000);
    return engine;
  }

  /** Where managers connect (for providers on other nodes, and tests). */
  get address(): { hostname: string; port: number } {
    return this.#interchange.address;
  }

  /** The folder of the manager and worker logs. */
  get runDir(): string {
    return this.#runDir;
  }

  /** Current lifecycle state. */
  get state(): EngineState {
    return this.#state;
  }

  /** The ids of the blocks running now. */
  get blocks(): BlockHandle[] {
    return [...this.#blocks.values()].flatMap((b) => (b.handle ? [b.handle] : []));
  }

  /**
   * Runs a task (in the container image `container`, if given; an MPI task with the resource
   * specification its message carries); resolves with its result.
   */
  submit(
    taskId: string,
    buffer: string,
    container?: string,
    context?: SubmitContext,
  ): Promise<ResultMessage> {
    return this.#interchange.submit(taskId, buffer, container, context?.resourceSpecification);
  }

  /** Cancels a queued or running task. */
  cancel(taskId: string): boolean {
    return this.#interchange.cancel(taskId);
  }

  /** Counts for status reports, with the blocks by state. */
  status(): EngineStatus {
    let pending = 0;
    let running = 0;
    for (const b of this.#blocks.values()) {
      if (b.state === "running") running++;
      else if (!TERMINAL_STATES.has(b.state as BlockState)) pending++;
    }
    return {
      ...this.#interchange.status(),
      blocks: { pending, running, completed: this.#completed, failed: this.#failed },
      provider: this.#provider.label,
      provider_error: this.#providerError,
    };
  }

  /** The options of block `blockId`'s manager. */
  managerOptions(blockId: string, managerId: string): ManagerOptions {
    const c = this.#config;
    return {
      interchange_host: this.address.hostname,
      interchange_port: this.address.port,
      manager_id: managerId,
      block_id: blockId,
      max_workers_per_node: c.max_workers_per_node,
      cores_per_worker: c.cores_per_worker,
      mem_per_worker: c.mem_per_worker,
      available_accelerators: c.available_accelerators,
      worker_init: c.worker_init,
      permissions: c.permissions,
      task_walltime_s: c.task_walltime_s,
      worker_send_ahead: c.worker_send_ahead,
      worker_huge_pages: c.worker_huge_pages,
      heartbeat_period: c.heartbeat_period,
      heartbeat_threshold: c.heartbeat_threshold,
      run_dir: this.#runDir,
      worker_command: this.#options.workerCommand ? [...this.#options.workerCommand] : null,
      container: containerSettings(c),
      mpi: c.mpi ? { config: c.mpi, nodes_per_block: c.nodes_per_block } : null,
    };
  }

  async #startBlock(): Promise<Block> {
    const blockId = String(++this.#nextBlock);
    const managerId = `manager_${blockId}`;
    const block: Block = {
      handle: undefined,
      managerId,
      ready: Promise.withResolvers(),
      state: "submitting",
      stopping: false,
      hadManager: false,
    };
    block.ready.promise.catch(() => {});
    this.#blocks.set(blockId, block);
    const command = this.#options.managerCommand ?? engineCommand("manager", ["--allow-all"]);
    try {
      block.handle = await this.#provider.start(blockId, command, {
        [SECRET_ENV]: this.#secret,
        [OPTIONS_ENV]: JSON.stringify(this.managerOptions(blockId, managerId)),
      });
      block.state = "pending";
      this.#providerError = null;
      this.#submitFailures = 0;
    } catch (err) {
      this.#blocks.delete(blockId);
      this.#providerError = (err as Error).message;
      throw err;
    }
    const handle = block.handle;
    this.#track(handle.ended.then(async (reason) => {
      const tail = handle.logPath ? await fileTail(handle.logPath, 1500) : "";
      block.ready.reject(
        new Error(`Manager of block ${blockId} ${reason} before it was ready\n${tail}`),
      );
      if (block.state !== "submitting" && !TERMINAL_STATES.has(block.state)) {
        block.state = block.stopping ? "cancelled" : "failed";
      }
      if (this.#blocks.get(blockId) !== block) return;
      // Ended on its own: count it, forget it, and let the strategy replace it if needed.
      this.#blocks.delete(blockId);
      if (this.#state !== "running") return;
      this.#failed++;
      log.warn("Block {id} ended: {reason}", { id: blockId, reason });
      this.#scheduleTick(1000);
    }));
    return block;
  }

  /** Starts `n` blocks; a failed submission is logged and retried later with backoff. */
  async #scaleOut(n: number): Promise<void> {
    if (n <= 0 || Date.now() < this.#submitAfter) return;
    const results = await Promise.allSettled(Array.from({ length: n }, () => this.#startBlock()));
    const failure = results.find((r) => r.status === "rejected");
    if (failure) {
      this.#submitFailures++;
      const backoffMs = backoffDelay(this.#submitFailures, { minMs: 2000, maxMs: 60_000 });
      this.#submitAfter = Date.now() + backoffMs;
      log.error("Cannot start a block (next try in {s} s): {err}", {
        s: Math.round(backoffMs / 100) / 10,
        err: (failure.reason as Error).message,
      });
    }
  }

  /** Stops `n` blocks: those without a ready manager first, then the newest. */
  #scaleIn(n: number): void {
    const live = [...this.#blocks.entries()].filter(([, b]) => b.handle && !b.stopping);
    live.sort(([a, x], [b, y]) =>
      Number(x.hadManager) - Number(y.hadManager) || Number(b) - Number(a)
    );
    for (const [id] of live.slice(0, n)) {
      log.info("Block {id} idle: stopping it", { id });
      this.#completed++;
      this.#stopBlock(id);
    }
  }

  #scheduleTick(ms: number): void {
    if (this.#state === "draining" || this.#state === "stopped") return;
    if (this.#tickTimer !== undefined) {
      clearTimeout(this.#tickTimer);
      this.#timers.delete(this.#tickTimer);
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#tickTimer = undefined;
      if (this.#ticking) {
        this.#scheduleTick(ms);
        return;
      }
      this.#ticking = this.#tick().catch((err) =>
        log.error("Scaling step failed: {err}", { err: String(err) })
      ).finally(() => {
        this.#ticking = undefined;
        this.#scheduleTick(this.#config.strategy_period * 1000);
      });
      this.#track(this.#ticking);
    }, ms);
    this.#tickTimer = timer;
    this.#timers.add(timer);
  }

  /** One strategy step: poll the provider, forget ended blocks, scale. */
  async #tick(): Promise<void> {
    if (this.#state !== "running") return;
    const polled = [...this.#blocks.values()].filter((b) => b.handle && !b.stopping);
    if (polled.length > 0) {
      try {
        const states = await this.#provider.status(polled.map((b) => b.handle!));
        polled.forEach((b, i) => {
          if (b.state !== states[i]!.state) {
            log.info("Block {id}: {from} -> {to}{why}", {
              id: b.handle!.blockId,
              from: b.state,
              to: states[i]!.state,
              why: states[i]!.message ? ` (${states[i]!.message})` : "",
            });
          }
          b.state = states[i]!.state;
        });
      } catch (err) {
        this.#providerError = (err as Error).message;
        log.error("Cannot poll blocks: {err}", { err: this.#providerError });
      }
    }
    if (this.#state !== "running") return;
    // Blocks seen ended are removed by their `ended` watcher; do not count them as active.
    const active =
      [...this.#blocks.values()].filter((b) =>
        !b.stopping && !TERMINAL_STATES.has(b.state as BlockState)
      ).length;
    const decision = this.#strategy.decide({
      activeTasks: this.#interchange.outstanding(),
      activeBlocks: active,
      tasksPerNode: this.#config.max_workers_per_node,
      now: performance.now(),
    });
    if (decision.action === "scale_out") {
      log.info("Scaling out by {n} block(s)", { n: decision.blocks });
      await this.#scaleOut(decision.blocks);
    } else if (decision.action === "scale_in") {
      this.#scaleIn(decision.blocks);
    }
  }

  #track(p: Promise<unknown>): void {
    const q = p.finally(() => this.#pending.delete(q));
    this.#pending.add(q);
  }

  #stopBlock(blockId: string): void {
    const block = this.#blocks.get(blockId);
    if (!block?.handle) return;
    block.stopping = true;
    this.#blocks.delete(blockId);
    const p = this.#provider.stop(block.handle).catch((err) =>
      log.error("Cannot stop block {id}: {err}", { id: blockId, err })
    ).finally(() => this.#stopping.delete(p));
    this.#stopping.add(p);
  }

  #onEvent(e: ManagerEvent): void {
    const block = this.#blocks.get(e.blockId);
    if (e.type === "ready") {
      if (block) {
        block.hadManager = true;
        if (block.state === "pending" || block.state === "submitting") block.state = "running";
      }
      block?.ready.resolve();
    } else if (e.type === "fatal") {
      block?.ready.reject(new Error(`Manager of block ${e.blockId} failed: ${e.message}`));
      this.#stopBlock(e.blockId);
    } else if (e.type === "lost") {
      if (block && !block.stopping && this.#state === "running") this.#failed++;
      this.#stopBlock(e.blockId);
      // The strategy replaces it if min_blocks or waiting tasks ask for it.
      this.#scheduleTick(1000);
    }
    if (e.type !== "fatal") this.#options.onWorkersChanged?.();
  }

  /** Same as {@linkcode close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Stops the interchange and every block (grace, then force); idempotent. */
  async close(): Promise<void> {
    if (this.#state === "draining" || this.#state === "stopped") return;
    this.#state = "draining";
    for (const t of this.#timers) clearTimeout(t);
    await this.#interchange.close(this.#options.graceS ?? 5);
    do {
      for (const id of [...this.#blocks.keys()]) this.#stopBlock(id);
      await Promise.all([...this.#stopping, ...this.#pending]);
    } while (this.#stopping.size > 0 || this.#pending.size > 0 || this.#blocks.size > 0);
    if (this.#ownsRunDir) await Deno.remove(this.#runDir, { recursive: true }).catch(() => {});
    this.#state = "stopped";
  }
}
