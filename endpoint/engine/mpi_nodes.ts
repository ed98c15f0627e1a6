/**
 * A block's nodes in MPI mode, and how they are shared among the MPI tasks that run at once.
 * The manager reads its block's nodes where it runs ({@linkcode blockNodes}: Slurm's
 * `SLURM_JOB_NODELIST`, Grid Engine's `PE_HOSTFILE`, else this host once per node of the block),
 * and a {@linkcode SlotAllocator} gives each task `num_nodes` nodes with `ranks_per_node` free
 * slots each, taking them until the task ends, so the ranks of all running tasks never
 * oversubscribe what the block has.
 *
 * @module
 */
import { hostname } from "node:os";
import type { ResourceSpecificationWire } from "../../sdk/protocol/resource_specification.ts";

/** A node of a block and the ranks it may run at once. */
export interface MpiNode {
  /** Its host name, as the launcher names it. */
  host: string;
  /** Ranks it may run at once (over all tasks). */
  slots: number;
}

/** The nodes and slots an MPI task was given; hand it back to {@linkcode SlotAllocator.release}. */
export interface SlotAllocation {
  /** Indexes of its nodes in the block's node list. */
  readonly nodes: readonly number[];
  /** Their hosts, in the same order. */
  readonly hosts: readonly string[];
  /** Slots taken on each of its nodes. */
  readonly slotsPerNode: number;
}

/** Shares a block's nodes and their slots among MPI tasks; pure bookkeeping. */
export class SlotAllocator {
  readonly #nodes: readonly MpiNode[];
  readonly #free: number[];

  /** An allocator for `nodes`, all free. */
  constructor(nodes: readonly MpiNode[]) {
    if (nodes.length === 0) throw new RangeError("A block needs at least one node for MPI tasks");
    this.#nodes = nodes;
    this.#free = nodes.map((n) => n.slots);
  }

  /** The block's nodes. */
  get nodes(): readonly MpiNode[] {
    return this.#nodes;
  }

  /** Free slots per node, in node order. */
  get free(): readonly number[] {
    return [...this.#free];
  }

  /**
   * Why `spec` can never run in this block, even with every node free (words for the user),
   * or `undefined` when it can.
   */
  tooLarge(spec: ResourceSpecificationWire): string | undefined {
    const fitting = this.#nodes.filter((n) => n.slots >= spec.ranks_per_node).length;
    if (fitting >= spec.num_nodes) return undefined;
    const most = Math.max(...this.#nodes.map((n) => n.slots));
    return `it asks for ${spec.num_nodes} node(s) with ${spec.ranks_per_node} rank(s) each ` +
      `(${spec.num_ranks} ranks), but a block has ${this.#nodes.length} node(s) with at most ` +
      `${most} slot(s) each`;
  }

  /**
   * Takes `num_nodes` nodes with `ranks_per_node` free slots each (the first that fit, in node
   * order), or returns `undefined` when not enough are free now.
   */
  allocate(spec: ResourceSpecificationWire): SlotAllocation | undefined {
    const chosen: number[] = [];
    for (let i = 0; i < this.#free.length && chosen.length < spec.num_nodes; i++) {
      if (this.#free[i]! >= spec.ranks_per_node) chosen.push(i);
    }
    if (chosen.length < spec.num_nodes) return undefined;
    for (const i of chosen) this.#free[i]! -= spec.ranks_per_node;
    return {
      nodes: chosen,
      hosts: chosen.map((i) => this.#nodes[i]!.host),
      slotsPerNode: spec.ranks_per_node,
    };
  }

  /** Gives an allocation's slots back. */
  release(allocation: SlotAllocation): void {
    for (const i of allocation.nodes) {
      this.#free[i] = Math.min(this.#nodes[i]!.slots, this.#free[i]! + allocation.slotsPerNode);
    }
  }
}

/**
 * Parses Grid Engine's `PE_HOSTFILE` (lines `host slots queue processors`) into nodes; a
 * non-null `slotsPerNode` overrides the file's slot counts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePeHostfile } from "./mpi_nodes.ts";
 * assert.deepEqual(parsePeHostfile("n1.example 4 all.q@n1 UNDEFINED\nn2 2 all.q@n2 UNDEFINED\n", null), [
 *   { host: "n1.example", slots: 4 },
 *   { host: "n2", slots: 2 },
 * ]);
 * ```
 */
export function parsePeHostfile(text: string, slotsPerNode: number | null): MpiNode[] {
  const nodes: MpiNode[] = [];
  for (const line of text.split("\n")) {
    const [host, slots] = line.trim().split(/\s+/);
    if (!host) continue;
    const n = Number(slots);
    if (slotsPerNode === null && !(Number.isInteger(n) && n > 0)) {
      throw new Error(`Cannot read PE_HOSTFILE line "${line.trim()}": expected "host slots ..."`);
    }
    nodes.push({ host, slots: slotsPerNode ?? n });
  }
  return nodes;
}

/** What {@linkcode blockNodes} reads. */
export interface BlockNodesOptions {
  /** The manager's environment (Slurm's and Grid Engine's variables). */
  env: Record<string, string>;
  /** The engine's `nodes_per_block` (for a block that is not a batch job). */
  nodesPerBlock: number;
  /** `engine.mpi.slots_per_node`. */
  slotsPerNode: number | null;
}

/**
 * The nodes of the block this manager runs in: Slurm's `SLURM_JOB_NODELIST` (expanded with
 * `scontrol show hostnames`), else Grid Engine's `PE_HOSTFILE`, else this host `nodesPerBlock`
 * times (a local block). Slots per node: `slotsPerNode`, else what the batch system says, else
 * this node's cores.
 */
export async function blockNodes(options: BlockNodesOptions): Promise<MpiNode[]> {
  const { env, slotsPerNode } = options;
  const cores = navigator.hardwareConcurrency;
  const nodelist = env["SLURM_JOB_NODELIST"] ?? env["SLURM_NODELIST"];
  if (nodelist) {
    const out = await new Deno.Command("scontrol", {
      args: ["show", "hostnames", nodelist],
      env,
      clearEnv: true,
      stdin: "null",
    }).output().catch((err: Error) => {
      throw new Error(`Cannot expand SLURM_JOB_NODELIST "${nodelist}": ${err.message}`);
    });
    if (!out.success) {
      const why = new TextDecoder().decode(out.stderr).trim();
      throw new Error(
        `Cannot expand SLURM_JOB_NODELIST "${nodelist}": scontrol show hostnames exited with ` +
          `code ${out.code}: ${why}`,
      );
    }
    const hosts = new TextDecoder().decode(out.stdout).split("\n").map((h) => h.trim())
      .filter((h) => h !== "");
    const slurmSlots = Number(env["SLURM_CPUS_ON_NODE"]);
    const slots = slotsPerNode ??
      (Number.isInteger(slurmSlots) && slurmSlots > 0 ? slurmSlots : cores);
    return hosts.map((host) => ({ host, slots }));
  }
  const peHostfile = env["PE_HOSTFILE"];
  if (peHostfile) {
    const text = await Deno.readTextFile(peHostfile).catch((err: Error) => {
      throw new Error(`Cannot read PE_HOSTFILE "${peHostfile}": ${err.message}`);
    });
    return parsePeHostfile(text, slotsPerNode);
  }
  const host = hostname();
  return Array.from(
    { length: options.nodesPerBlock },
    () => ({ host, slots: slotsPerNode ?? cores }),
  );
}
