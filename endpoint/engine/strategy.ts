/**
 * Block scaling, after Parsl's and funcX's `SimpleStrategy` (§4.9.6 of the funcX reference):
 * every strategy period the engine passes the outstanding tasks and the live blocks, and gets
 * back how many blocks to start or stop. Pure logic plus an idle timer; the engine acts on it.
 *
 * @module
 */

/** The scaling knobs (from the `engine` section of `config.yaml`). */
export interface StrategyConfig {
  /** Blocks kept even when idle. */
  min_blocks: number;
  /** Blocks never exceeded. */
  max_blocks: number;
  /** Nodes (managers) per block. */
  nodes_per_block: number;
  /** Wanted slots per outstanding task (0–1): 1 starts blocks for every waiting task. */
  parallelism: number;
  /** Seconds without tasks before blocks above `min_blocks` are stopped. */
  max_idletime: number;
}

/** What the engine sees at one strategy tick. */
export interface StrategyInput {
  /** Tasks queued in the interchange or held by managers. */
  activeTasks: number;
  /** Blocks pending or running at the provider (not being stopped). */
  activeBlocks: number;
  /** Workers per manager (`max_workers_per_node`). */
  tasksPerNode: number;
  /** Milliseconds, monotonic. */
  now: number;
}

/** What to do at one tick. */
export type StrategyDecision =
  | { action: "none" }
  | { action: "scale_out"; blocks: number }
  | { action: "scale_in"; blocks: number };

/** The SimpleStrategy's decisions, with its idle timer. */
export class SimpleStrategy {
  readonly #c: StrategyConfig;
  #idleSince: number | undefined;

  /** A strategy with `config`. */
  constructor(config: StrategyConfig) {
    this.#c = config;
  }

  /** The decision for this tick. */
  decide(input: StrategyInput): StrategyDecision {
    const c = this.#c;
    const { activeTasks, activeBlocks } = input;
    const room = c.max_blocks - activeBlocks;
    if (activeBlocks < c.min_blocks) {
      this.#idleSince = undefined;
      return { action: "scale_out", blocks: c.min_blocks - activeBlocks };
    }
    if (activeTasks === 0) {
      if (activeBlocks <= c.min_blocks) {
        this.#idleSince = undefined;
        return { action: "none" };
      }
      this.#idleSince ??= input.now;
      if (input.now - this.#idleSince >= c.max_idletime * 1000) {
        this.#idleSince = undefined;
        return { action: "scale_in", blocks: activeBlocks - c.min_blocks };
      }
      return { action: "none" };
    }
    this.#idleSince = undefined;
    const perBlock = Math.max(1, input.tasksPerNode) * c.nodes_per_block;
    const slots = activeBlocks * perBlock;
    if (room <= 0) return { action: "none" };
    if (slots / activeTasks < c.parallelism) {
      const want = Math.ceil(Math.ceil(activeTasks * c.parallelism - slots) / perBlock);
      if (want > 0) return { action: "scale_out", blocks: Math.min(want, room) };
    }
    // Even with parallelism 0, waiting tasks get one block.
    if (slots === 0) return { action: "scale_out", blocks: 1 };
    return { action: "none" };
  }
}
