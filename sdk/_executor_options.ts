/**
 * The options of `FuncXExecutor` and of its `shutdown`, and their checks: the options become one
 * fully-defaulted config when the executor is built, before anything is sent.
 *
 * @module
 */
import { FuncXClient } from "./client.ts";
import { type ResourceSpecification, toResourceSpecificationWire } from "./mpi_function.ts";
import type { ResourceSpecificationWire } from "./protocol/resource_specification.ts";

/**
 * Options of {@linkcode FuncXExecutor}.
 *
 * @example Options checked when the executor is built
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXClient, FuncXExecutor, type FuncXExecutorOptions } from "@funcx/sdk";
 * const options: FuncXExecutorOptions = {
 *   endpointId: crypto.randomUUID(),
 *   client: new FuncXClient({ serviceAddress: "http://127.0.0.1:9", accessToken: "t" }),
 *   batchSize: 256,
 *   resultTimeoutMs: 60_000,
 * };
 * assert.equal(new FuncXExecutor(options).endpointId, options.endpointId);
 * ```
 */
export interface FuncXExecutorOptions {
  /** Endpoint the tasks run on. */
  endpointId: string;
  /** Client to use. @default a new `FuncXClient()` from the environment */
  client?: FuncXClient;
  /**
   * Task group to submit into (give an existing one to reattach to it with `reloadTasks`; it can
   * also be assigned later, see {@linkcode FuncXExecutor.taskGroupId}). @default a new one
   */
  taskGroupId?: string;
  /** Most tasks per submit request. @default 128 */
  batchSize?: number;
  /** A name for logs. @default "FuncXExecutor" */
  label?: string;
  /**
   * Container (from {@linkcode FuncXClient.registerContainer}) that functions run in; functions
   * are registered with it. @default none: the endpoint's plain workers
   */
  containerId?: string;
  /**
   * What `MPIFunction` tasks ask for (nodes, ranks per node, ranks); it can also be set later,
   * see {@linkcode FuncXExecutor.resourceSpecification}. @default none: the endpoint's default,
   * one node and one rank
   */
  resourceSpecification?: ResourceSpecification;
  /**
   * A deadline for each future, in ms from its `submit`: a future without an outcome by then
   * rejects with {@linkcode ResultTimeoutError} (the task may still run). @default none: a future
   * waits for its task's outcome however long the service or the broker is away
   */
  resultTimeoutMs?: number;
  /**
   * Values for the user endpoint template of a multi-user endpoint (partition, walltime,
   * workers, account, ...), checked there against the administrator's schema; each different
   * set of values gets a user endpoint of its own. @default none: the template's defaults
   */
  userEndpointConfig?: Record<string, unknown>;
  /**
   * Aborting it rejects every unsettled future with the signal's reason and stops the executor
   * (tasks already sent keep running; `reloadTasks` finds them). @default none
   */
  signal?: AbortSignal;
}

/**
 * Options of {@linkcode FuncXExecutor.shutdown}.
 *
 * @example Stop without waiting, dropping what was not sent
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ShutdownOptions } from "@funcx/sdk";
 * const options: ShutdownOptions = { wait: false, cancelFutures: true };
 * assert.equal(options.cancelFutures, true);
 * ```
 */
export interface ShutdownOptions {
  /** Wait for outstanding futures to settle. @default true */
  wait?: boolean;
  /** Cancel futures that were not sent yet. @default false */
  cancelFutures?: boolean;
}

/** {@linkcode FuncXExecutorOptions} checked, with every default filled in. */
export interface ExecutorConfig {
  /** Endpoint the tasks run on. */
  endpointId: string;
  /** Client to use. */
  client: FuncXClient;
  /** Task group to submit into, in the service's spelling. */
  taskGroupId: string;
  /** A name for logs. */
  label: string;
  /** Container that functions run in. */
  containerId: string | undefined;
  /** What MPI tasks ask for, checked and complete. */
  resourceSpecification: ResourceSpecificationWire | undefined;
  /** Most tasks per submit request. */
  batchSize: number;
  /** A deadline for each future, in ms from its `submit`. */
  resultTimeoutMs: number | undefined;
  /** Values for a multi-user endpoint's user endpoint template. */
  userEndpointConfig: Record<string, unknown> | undefined;
}

/**
 * Checks `options` and fills in the defaults; throws a `TypeError` or `RangeError` naming the
 * bad option.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXClient } from "@funcx/sdk";
 * import { resolveExecutorOptions } from "./_executor_options.ts";
 * const client = new FuncXClient({ serviceAddress: "http://127.0.0.1:9", accessToken: "t" });
 * const config = resolveExecutorOptions({ endpointId: crypto.randomUUID(), client });
 * assert.equal(config.batchSize, 128);
 * assert.equal(config.label, "FuncXExecutor");
 * assert.throws(
 *   () => resolveExecutorOptions({ endpointId: "e1", client, resultTimeoutMs: 0 }),
 *   /Invalid resultTimeoutMs 0/,
 * );
 * ```
 */
export function resolveExecutorOptions(options: FuncXExecutorOptions): ExecutorConfig {
  if (typeof options.endpointId !== "string" || options.endpointId === "") {
    throw new TypeError(
      `Invalid endpointId ${JSON.stringify(options.endpointId)}: expected the endpoint's id ` +
        "(set FUNCX_ENDPOINT_ID, or see `funcx-endpoint list`)",
    );
  }
  const client = options.client ?? new FuncXClient();
  const taskGroupId = checkTaskGroupId(options.taskGroupId ?? crypto.randomUUID());
  const batchSize = options.batchSize ?? 128;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`Invalid batchSize ${batchSize}: expected a whole number >= 1`);
  }
  const resultTimeoutMs = options.resultTimeoutMs;
  if (resultTimeoutMs !== undefined && !(resultTimeoutMs > 0)) {
    throw new RangeError(`Invalid resultTimeoutMs ${resultTimeoutMs}: expected a number > 0`);
  }
  return {
    endpointId: options.endpointId,
    client,
    taskGroupId,
    label: options.label ?? "FuncXExecutor",
    containerId: options.containerId,
    resourceSpecification: options.resourceSpecification
      ? toResourceSpecificationWire(options.resourceSpecification)
      : undefined,
    batchSize,
    resultTimeoutMs,
    userEndpointConfig: options.userEndpointConfig,
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `taskGroupId` in the service's spelling (lower case); a `TypeError` when it is not a UUID.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTaskGroupId } from "./_executor_options.ts";
 * const id = "3F0C1A9E-7D2B-4C55-9E61-0A8F4B2C1D3E";
 * assert.equal(checkTaskGroupId(id), id.toLowerCase());
 * assert.throws(() => checkTaskGroupId("g1"), TypeError);
 * ```
 */
export function checkTaskGroupId(taskGroupId: unknown): string {
  if (typeof taskGroupId !== "string" || !UUID.test(taskGroupId)) {
    throw new TypeError(
      `Invalid task group id ${JSON.stringify(taskGroupId)}: expected a UUID such as ` +
        `"${crypto.randomUUID()}"`,
    );
  }
  return taskGroupId.toLowerCase();
}
