/**
 * The execution engine of an endpoint: an interchange in the daemon hands tasks over TCP to
 * managers (one per node or block), each running a pool of Deno worker subprocesses.
 * `createEngine` builds one from the `engine` section of the endpoint's `config.yaml`.
 *
 * @module
 */
export type { BlockCounts, Engine, EngineStatus, SubmitContext } from "./engine.ts";
export { PoolClosed } from "./engine.ts";
export { HighThroughputEngine } from "./htex.ts";
export type { EngineOptions, EngineState } from "./htex.ts";
export type { ManagerOptions } from "./manager.ts";
export type { BlockHandle, BlockState, BlockStatus, Provider } from "./provider.ts";
export { TERMINAL_STATES } from "./provider.ts";
export { LocalProvider } from "./local_provider.ts";
export {
  SchedulerCommandError,
  SlurmProvider,
  type SlurmProviderOptions,
  slurmState,
} from "./slurm_provider.ts";
export {
  GridEngineProvider,
  type GridEngineProviderOptions,
  gridEngineState,
  parseQstatXml,
  qacctState,
} from "./gridengine_provider.ts";
export {
  SimpleStrategy,
  type StrategyConfig,
  type StrategyDecision,
  type StrategyInput,
} from "./strategy.ts";
export { engineCommand, type EngineRole, type WorkerPermissions } from "./command.ts";
export { shellFunctionSource, type ShellResult, type ShellSpec } from "./shell.ts";
export {
  type EngineConfig,
  type EngineConfigInput,
  EngineConfigSchema,
  PermissionsSchema,
} from "./engine_config.ts";
export {
  GridEngineProviderSchema,
  LocalProviderSchema,
  ProviderConfigSchema,
  SlurmProviderSchema,
} from "./provider_config.ts";
export { createEngine, type CreateEngineOptions } from "./create_engine.ts";
