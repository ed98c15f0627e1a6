/**
 * The resources an MPI task asks for, as they travel in a `task` message
 * (`resource_specification`) and as the service stores them: nodes, ranks per node and ranks.
 * The SDK, the service and the endpoint all check a specification with
 * {@linkcode resolveResourceSpecification}, so a bad one is refused where it is first seen, with
 * the same words.
 *
 * @module
 */

/**
 * The resources of one MPI task, complete (every field set), as the endpoint reads them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ResourceSpecificationWire } from "@funcx/sdk/protocol";
 * const spec: ResourceSpecificationWire = { num_nodes: 2, ranks_per_node: 2, num_ranks: 4 };
 * assert.ok(spec.num_ranks <= spec.num_nodes * spec.ranks_per_node);
 * ```
 */
export interface ResourceSpecificationWire {
  /** Nodes the task spans. */
  num_nodes: number;
  /** Most ranks (MPI processes) placed on each node. */
  ranks_per_node: number;
  /** Ranks in all; at most `num_nodes × ranks_per_node`. */
  num_ranks: number;
}

/**
 * Checks a resource specification and fills what it leaves out: one node by default; ranks per
 * node from the ranks spread over the nodes (else 1); ranks from nodes × ranks per node. Field
 * names in errors are `names` (the SDK passes its camelCase ones).
 *
 * @param spec The specification as given (an object with up to three positive integers).
 * @param names How the three fields are called where `spec` came from.
 * @returns The complete specification.
 * @throws {TypeError} When `spec` is not an object, has other fields, or a field is not a
 *   positive integer.
 * @throws {RangeError} When the ranks do not fit the nodes × ranks per node.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveResourceSpecification } from "@funcx/sdk/protocol";
 * assert.deepEqual(resolveResourceSpecification({ num_nodes: 2, num_ranks: 3 }), {
 *   num_nodes: 2,
 *   ranks_per_node: 2,
 *   num_ranks: 3,
 * });
 * assert.throws(() => resolveResourceSpecification({ num_ranks: 0 }), TypeError);
 * ```
 */
export function resolveResourceSpecification(
  spec: unknown,
  names: readonly [nodes: string, perNode: string, ranks: string] = [
    "num_nodes",
    "ranks_per_node",
    "num_ranks",
  ],
): ResourceSpecificationWire {
  const what = "Invalid resource specification";
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) {
    throw new TypeError(`${what}: expected an object with ${names.join(", ")}`);
  }
  const record = spec as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!names.includes(key)) {
      throw new TypeError(`${what}: unknown field "${key}" (known: ${names.join(", ")})`);
    }
  }
  const field = (name: string): number | undefined => {
    const v = record[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new TypeError(`${what}: ${name} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const nodes = field(names[0]) ?? 1;
  const ranks = field(names[2]);
  const perNode = field(names[1]) ?? (ranks === undefined ? 1 : Math.ceil(ranks / nodes));
  const total = ranks ?? nodes * perNode;
  if (total > nodes * perNode) {
    throw new RangeError(
      `${what}: ${names[2]} (${total}) is more than ${names[0]} × ${names[1]} ` +
        `(${nodes} × ${perNode}); ask for more nodes or ranks per node`,
    );
  }
  if (total < nodes) {
    throw new RangeError(
      `${what}: ${names[2]} (${total}) is fewer than ${names[0]} (${nodes}); every node needs ` +
        "a rank",
    );
  }
  return { num_nodes: nodes, ranks_per_node: perNode, num_ranks: total };
}
