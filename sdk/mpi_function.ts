/**
 * `MPIFunction`: a {@linkcode ShellFunction} whose command an endpoint in MPI mode runs under its
 * MPI launcher. The command says where the launcher goes with `$FUNCX_MPI_PREFIX`
 * (`"$FUNCX_MPI_PREFIX ./simulate"`); the endpoint sets it to a launcher command line for the
 * nodes it gave the task (`mpiexec -n 4 --map-by ppr:2:node -H n1:2,n2:2`), after the task's
 * {@linkcode ResourceSpecification} (set on the executor, or per task on `client.run` and
 * `Batch`). The function travels as an ordinary registered function named `__funcx_mpi__` whose
 * body returns its {@linkcode ShellSpec}; the result is an {@linkcode MPIResult}.
 *
 * @module
 */
import { resolveResourceSpecification } from "./protocol/resource_specification.ts";
import type { ResourceSpecificationWire } from "./protocol/resource_specification.ts";
import { ShellFunction, type ShellResult, type ShellSpec } from "./shell_function.ts";

/**
 * The name that marks an MPIFunction.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MPI_FUNCTION_NAME, MPIFunction } from "./mpi_function.ts";
 * assert.ok(new MPIFunction("$FUNCX_MPI_PREFIX hostname").source().includes(MPI_FUNCTION_NAME));
 * ```
 */
export const MPI_FUNCTION_NAME = "__funcx_mpi__";

/**
 * The resources of an MPI task: nodes, ranks (MPI processes) per node and ranks in all. What is
 * left out is filled in: one node; ranks per node from the ranks spread over the nodes, else 1;
 * ranks from nodes × ranks per node.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ResourceSpecification } from "@funcx/sdk";
 * const spec: ResourceSpecification = { numNodes: 2, ranksPerNode: 4 };
 * assert.equal(spec.numRanks, undefined);
 * ```
 */
export interface ResourceSpecification {
  /** Nodes the task spans. @default 1 */
  numNodes?: number;
  /** Most ranks placed on each node. @default ceil(numRanks / numNodes), else 1 */
  ranksPerNode?: number;
  /** Ranks in all; at most `numNodes × ranksPerNode`. @default numNodes × ranksPerNode */
  numRanks?: number;
}

/**
 * Checks a {@linkcode ResourceSpecification} and gives its wire form (`resource_specification`
 * of a task), every field filled in.
 *
 * @throws {TypeError} When a field is not a positive integer or is unknown.
 * @throws {RangeError} When `numRanks` is more than `numNodes × ranksPerNode`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toResourceSpecificationWire } from "@funcx/sdk";
 * assert.deepEqual(toResourceSpecificationWire({ numRanks: 4 }), {
 *   num_nodes: 1,
 *   ranks_per_node: 4,
 *   num_ranks: 4,
 * });
 * assert.throws(() => toResourceSpecificationWire({ numNodes: 1, ranksPerNode: 2, numRanks: 3 }));
 * ```
 */
export function toResourceSpecificationWire(
  spec: ResourceSpecification,
): ResourceSpecificationWire {
  const camel = spec as Record<string, unknown>;
  const known = ["numNodes", "ranksPerNode", "numRanks"] as const;
  // Unknown keys are named by resolveResourceSpecification; undefined ones are absent.
  const given = Object.fromEntries(Object.entries(camel).filter(([, v]) => v !== undefined));
  return resolveResourceSpecification(given, known);
}

/**
 * What an MPIFunction returns: a {@linkcode ShellResult} (the launcher's exit code and the
 * ranks' output) and the hosts the task ran on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { MPIResult } from "@funcx/sdk";
 * const r: MPIResult = { returncode: 0, stdout: "rank 0 of 1\n", stderr: "", cmd: "", nodes: ["n1"] };
 * assert.equal(r.nodes.length, 1);
 * ```
 */
export interface MPIResult extends ShellResult {
  /** The hosts the task's ranks ran on, one entry per node. */
  nodes: string[];
}

/**
 * A command line an endpoint in MPI mode runs under its MPI launcher; `$FUNCX_MPI_PREFIX` in it
 * becomes the launcher command for the nodes the task was given, and `FUNCX_MPI_NODES`,
 * `FUNCX_MPI_NUM_NODES` and `FUNCX_MPI_NUM_RANKS` are set for it. Unlike a plain ShellFunction,
 * a non-zero exit fails the task (with the exit code and the end of stderr) unless
 * `fail_on_nonzero` is `false`.
 *
 * @example Run an MPI program with 4 ranks on one node (when `FUNCX_ENDPOINT_ID` names an
 * endpoint in MPI mode)
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXExecutor, MPIFunction, type MPIResult } from "@funcx/sdk";
 *
 * const hello = new MPIFunction("$FUNCX_MPI_PREFIX ./hello {greeting}");
 * assert.equal(hello.spec.fail_on_nonzero, true);
 * assert.ok(hello.source().startsWith("function __funcx_mpi__"));
 * const endpointId = Deno.env.get("FUNCX_ENDPOINT_ID");
 * if (endpointId) {
 *   await using fx = new FuncXExecutor({ endpointId });
 *   fx.resourceSpecification = { numNodes: 1, numRanks: 4 }; // for the submits that follow
 *   const id = await fx.client.registerShellFunction(hello);
 *   const r = await fx.submitToRegisteredFunction(id, [], { greeting: "hi" }) as MPIResult;
 *   assert.equal(r.nodes.length, 1);
 * }
 * ```
 */
export class MPIFunction extends ShellFunction {
  /** Always {@linkcode MPI_FUNCTION_NAME}. */
  override readonly functionName: string = MPI_FUNCTION_NAME;

  /**
   * Builds an MPI function from a command line (with `$FUNCX_MPI_PREFIX` where the launcher
   * goes) and options.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MPIFunction } from "@funcx/sdk";
   * const f = new MPIFunction("$FUNCX_MPI_PREFIX ./a.out", { fail_on_nonzero: false });
   * assert.equal(f.spec.fail_on_nonzero, false);
   * ```
   */
  constructor(cmd: string, options: Omit<ShellSpec, "cmd"> = {}) {
    super(cmd, { fail_on_nonzero: true, ...options });
  }

  /** The source text that is registered. */
  override source(): string {
    return `function ${MPI_FUNCTION_NAME}() { return ${JSON.stringify(this.spec)}; }`;
  }
}
