/**
 * The engine factory: validates the `engine` section of `config.yaml` and starts the engine it
 * describes.
 *
 * @module
 */
import { type EngineConfigInput, EngineConfigSchema } from "./engine_config.ts";
import { type EngineOptions, HighThroughputEngine } from "./htex.ts";

/** Options of {@linkcode createEngine} that do not come from the config file. */
export type CreateEngineOptions = EngineOptions;

/** Validates `config` and starts an engine; resolves once its first managers are ready. */
export async function createEngine(
  config: EngineConfigInput,
  options: CreateEngineOptions = {},
): Promise<HighThroughputEngine> {
  return await HighThroughputEngine.start(EngineConfigSchema.parse(config), options);
}
