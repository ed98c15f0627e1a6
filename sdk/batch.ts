/**
 * `Batch`: many tasks in one `POST /v2/submit`, the way to stay under the service's rate limit.
 *
 * @module
 */
import { type DataMethod, packArgs } from "./protocol/mod.ts";
import { type SubmitEntry, submitEntry } from "./_submit_entry.ts";
import { type ResourceSpecification, toResourceSpecificationWire } from "./mpi_function.ts";

/**
 * Options of one task of a {@linkcode Batch}.
 *
 * @example An MPI task on 2 nodes with 4 ranks each
 * ```ts
 * import assert from "node:assert/strict";
 * import { Batch, type BatchTaskOptions } from "@funcx/sdk";
 * const options: BatchTaskOptions = { resourceSpecification: { numNodes: 2, ranksPerNode: 4 } };
 * const batch = new Batch();
 * batch.add(crypto.randomUUID(), crypto.randomUUID(), [], {}, options);
 * assert.deepEqual(batch.tasks()[0]?.[3], {
 *   resource_specification: { num_nodes: 2, ranks_per_node: 4, num_ranks: 8 },
 * });
 * ```
 */
export interface BatchTaskOptions {
  /** What an `MPIFunction` task asks for. @default none: the endpoint's default (1 node, 1 rank) */
  resourceSpecification?: ResourceSpecification;
}

/**
 * Options of {@linkcode Batch}.
 *
 * @example A batch for one task group, with JSON arguments
 * ```ts
 * import assert from "node:assert/strict";
 * import { Batch, type BatchOptions } from "@funcx/sdk";
 * const options: BatchOptions = {
 *   taskGroupId: crypto.randomUUID(),
 *   method: "json",
 *   userEndpointConfig: { partition: "debug", walltime: "00:10:00" },
 * };
 * const batch = new Batch(options);
 * assert.equal(batch.taskGroupId, options.taskGroupId);
 * assert.deepEqual(batch.userEndpointConfig, { partition: "debug", walltime: "00:10:00" });
 * ```
 */
export interface BatchOptions {
  /** Task group the batch is submitted into. @default the client's session task group */
  taskGroupId?: string;
  /** Ask the service for a result queue for the group (the executor's result stream). @default false */
  createQueue?: boolean;
  /** Largest request the batch may grow to, in bytes. @default 5 MiB (the service's default limit) */
  maxBytes?: number;
  /** Data encoding of arguments. @default "cbor" */
  method?: DataMethod;
  /**
   * Values for a multi-user endpoint's user endpoint template (partition, walltime, workers,
   * ...), sent with every task of the batch. @default none
   */
  userEndpointConfig?: Record<string, unknown>;
}

/**
 * A batch of tasks to submit in one request.
 *
 * @example Fill a batch until it is full
 * ```ts
 * import assert from "node:assert/strict";
 * import { Batch } from "@funcx/sdk";
 * const batch = new Batch({ maxBytes: 1024 });
 * const fn = crypto.randomUUID();
 * const ep = crypto.randomUUID();
 * assert.throws(() => {
 *   for (let i = 0; i < 100; i++) batch.add(fn, ep, [i]);
 * }, RangeError);
 * assert.ok(batch.size > 0 && batch.bytes <= 1024);
 * ```
 */
export class Batch {
  /** Task group of the batch, if set. */
  readonly taskGroupId: string | undefined;
  /** Whether the service creates a result queue for the group. */
  readonly createQueue: boolean;
  /** Values for a multi-user endpoint's user endpoint template, if any. */
  readonly userEndpointConfig: Record<string, unknown> | undefined;
  readonly #maxBytes: number;
  readonly #method: DataMethod;
  readonly #tasks: SubmitEntry[] = [];
  #bytes = 64;

  /**
   * Builds an empty batch.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Batch } from "@funcx/sdk";
   * const batch = new Batch();
   * batch.add("6f1b8e64-5b9a-4b1e-9d55-2f4f3f9c1a01", "0c7a5c7e-4a55-4d43-9f0e-3f3c2b1a9d88", [1, 2]);
   * assert.ok(batch.size === 1);
   * ```
   */
  constructor(options: BatchOptions = {}) {
    this.taskGroupId = options.taskGroupId;
    this.createQueue = options.createQueue ?? false;
    this.userEndpointConfig = options.userEndpointConfig;
    this.#maxBytes = options.maxBytes ?? 5 * 1024 * 1024;
    this.#method = options.method ?? "cbor";
  }

  /**
   * Adds a task (an `MPIFunction` task with its `resourceSpecification`). Throws a `RangeError`
   * if the batch would outgrow the request size limit, so the caller can submit it and start a
   * new one, and a `TypeError`/`RangeError` for a bad resource specification.
   */
  add(
    functionId: string,
    endpointId: string,
    args: readonly unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: BatchTaskOptions = {},
  ): void {
    const spec = options.resourceSpecification
      ? toResourceSpecificationWire(options.resourceSpecification)
      : undefined;
    const payload = packArgs(args, kwargs, { method: this.#method });
    // JSON quoting can grow a payload; 1.1x plus the ids is a safe estimate of its request bytes.
    const bytes = Math.ceil(payload.length * 1.1) + functionId.length + endpointId.length + 12 +
      (spec ? 96 : 0);
    if (this.#bytes + bytes > this.#maxBytes) {
      throw new RangeError(
        `Batch would be ${this.#bytes + bytes} bytes, over the ${this.#maxBytes}-byte limit: ` +
          `submit it (${this.#tasks.length} tasks) and start another`,
      );
    }
    this.#bytes += bytes;
    this.#tasks.push(submitEntry(functionId, endpointId, payload, spec));
  }

  /** Number of tasks in the batch. */
  get size(): number {
    return this.#tasks.length;
  }

  /** Estimated request size in bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The tasks as `[function_id, endpoint_id, payload]` (and `{resource_specification}`). */
  tasks(): ReadonlyArray<SubmitEntry> {
    return this.#tasks;
  }
}
