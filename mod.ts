/**
 * The funcX SDK for Deno and Node: register functions and run them on funcX endpoints, from a
 * script, a notebook or a cron job.
 *
 * - {@linkcode FuncXExecutor}: `submit(fn, ...args)` gives a {@linkcode FuncXFuture}; tasks are
 *   batched, results arrive on a stream; `map`, `asCompleted`, `reloadTasks`, cancel.
 * - {@linkcode FuncXClient}: every REST call (register, run, results, endpoints, allow-lists),
 *   and {@linkcode Batch} for many tasks in one request.
 * - {@linkcode LoginManager}: device-flow login for people; scripts use client credentials
 *   (`FUNCX_SDK_CLIENT_ID`, `FUNCX_SDK_CLIENT_SECRET`).
 * - {@linkcode ShellFunction}: a command line run on the endpoint; {@linkcode MPIFunction}: one
 *   run under the endpoint's MPI launcher, on the nodes its resource specification asks for.
 * - Errors to catch: {@linkcode FuncxAPIError}, {@linkcode TaskPending},
 *   {@linkcode TaskExecutionFailed}, {@linkcode ResultTimeoutError},
 *   {@linkcode TaskCancelledError}.
 *
 * The wire protocol (serializer, messages, task states) is `@funcx/sdk/protocol`.
 *
 * Install: `deno add jsr:@funcx/sdk`, or for Node `npx jsr add @funcx/sdk`.
 *
 * @example Run a function on an endpoint (when `FUNCX_ENDPOINT_ID` names one)
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXExecutor } from "@funcx/sdk";
 *
 * const endpointId = Deno.env.get("FUNCX_ENDPOINT_ID");
 * if (endpointId) {
 *   // FUNCX_SERVICE_ADDRESS and FUNCX_SDK_CLIENT_ID/SECRET say where and who.
 *   await using fx = new FuncXExecutor({ endpointId });
 *   assert.equal(await fx.submit((a: number, b: number) => a + b, 40, 2), 42);
 * }
 * ```
 *
 * @example What works without a service
 * ```ts
 * import assert from "node:assert/strict";
 * import { Batch, SDK_VERSION, ShellFunction } from "@funcx/sdk";
 *
 * assert.match(SDK_VERSION, /^\d+\.\d+\.\d+/);
 * const batch = new Batch();
 * batch.add(crypto.randomUUID(), crypto.randomUUID(), [1, 2]);
 * assert.equal(batch.size, 1);
 * assert.equal(new ShellFunction("echo {word}").spec.cmd, "echo {word}");
 * ```
 *
 * @module
 */
export {
  type BatchResult,
  type ContainerInfo,
  type EndpointRegistration,
  type FunctionInfo,
  FuncXClient,
  type FuncXClientOptions,
  isTransientError,
  type RegisterEndpointOptions,
  type RegisterFunctionOptions,
  type RequestOptions,
  type ResultStreamInfo,
  type RunOptions,
  SDK_VERSION,
  type SubmitEntry,
  type SubmitOptions,
  type SubmitResponse,
  type TaskInfo,
} from "./sdk/client.ts";
export {
  type AnyFn,
  type CompletedFuture,
  FuncXExecutor,
  type FuncXExecutorOptions,
  type ShutdownOptions,
} from "./sdk/executor.ts";
export { FuncXFuture, type FutureState, TaskCancelledError } from "./sdk/future.ts";
export { Batch, type BatchOptions, type BatchTaskOptions } from "./sdk/batch.ts";
export {
  type DeviceCodePrompt,
  LoginManager,
  type LoginManagerOptions,
} from "./sdk/login_manager.ts";
export { ShellFunction, type ShellResult, type ShellSpec } from "./sdk/shell_function.ts";
export {
  MPIFunction,
  type MPIResult,
  type ResourceSpecification,
  toResourceSpecificationWire,
} from "./sdk/mpi_function.ts";
export {
  FuncxAPIError,
  MaxResultSizeExceeded,
  type RemoteErrorInfo,
  ResultTimeoutError,
  TaskExecutionFailed,
  TaskPending,
} from "./sdk/errors.ts";
export { type DataMethod, DeserializationError, SerializationError } from "./sdk/protocol/mod.ts";
