/**
 * The funcX SDK for Deno: register functions and run them on funcX endpoints, from a script, a
 * notebook or a cron job.
 *
 * ```ts ignore
 * import { FuncXClient } from "@funcx/sdk";
 *
 * const fx = new FuncXClient(); // FUNCX_SERVICE_ADDRESS, FUNCX_SDK_CLIENT_ID/SECRET
 * const fnId = await fx.registerFunction((n: number) => n * 2);
 * const taskId = await fx.run(fnId, Deno.env.get("FUNCX_ENDPOINT_ID")!, { args: [21] });
 * ```
 *
 * @module
 */
export {
  type BatchResult,
  compareVersions,
  type ContainerInfo,
  type EndpointRegistration,
  FuncXClient,
  type FuncXClientOptions,
  isTransientError,
  type RegisterEndpointOptions,
  type RegisterFunctionOptions,
  remoteErrorOf,
  type ResultStreamInfo,
  type RunOptions,
  SDK_VERSION,
  type SubmitEntry,
  type SubmitResponse,
  type TaskInfo,
} from "./sdk/client.ts";
export { Batch, type BatchOptions } from "./sdk/batch.ts";
export {
  BUILTIN_ENVIRONMENTS,
  type ResolvedEnvironment,
  resolveEnvironment,
} from "./sdk/environment.ts";
export {
  type DeviceCodePrompt,
  LoginManager,
  type LoginManagerOptions,
} from "./sdk/login_manager.ts";
export { defaultTokenStorePath, type StoredTokens, TokenStore } from "./sdk/token_store.ts";
export {
  SHELL_FUNCTION_NAME,
  ShellFunction,
  shellFunctionSource,
  type ShellResult,
  type ShellSpec,
} from "./sdk/shell_function.ts";
export {
  type AnyFn,
  type CompletedFuture,
  FuncXExecutor,
  type FuncXExecutorOptions,
  type ShutdownOptions,
} from "./sdk/executor.ts";
export { FuncXFuture, type FutureState, TaskCancelledError } from "./sdk/future.ts";
export {
  ResultWatcher,
  type ResultWatcherHandlers,
  type ResultWatcherOptions,
  type WatcherState,
} from "./sdk/result_watcher.ts";
export {
  FuncxAPIError,
  MaxResultSizeExceeded,
  type RemoteErrorInfo,
  ResultTimeoutError,
  TaskExecutionFailed,
  taskFailure,
  TaskPending,
} from "./sdk/errors.ts";
export {
  ActorName,
  type DataMethod,
  DeserializationError,
  deserialize,
  type FunctionSource,
  isTerminalState,
  packArgs,
  packBuffers,
  type ResultErrorDetails,
  type ResultMessage,
  serialize,
  type SerializeOptions,
  TaskState,
  type TaskTransition,
  unpackBuffers,
} from "./sdk/protocol/mod.ts";
