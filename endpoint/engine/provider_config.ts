/**
 * The `provider` member of the engine's config: one schema per kind of block (a local
 * subprocess, a Slurm job...), their union, and {@linkcode providerFromConfig}, which builds the
 * {@linkcode Provider} a validated member names. A new batch system adds its schema to
 * {@linkcode ProviderConfigSchema} and a case to {@linkcode providerFromConfig}.
 *
 * @module
 */
import { z } from "zod";
import { LocalProvider } from "./local_provider.ts";
import type { Provider } from "./provider.ts";
import { GridEngineProvider } from "./gridengine_provider.ts";
import { SlurmProvider } from "./slurm_provider.ts";

/** Lines given as one string (split on newlines) or a list. */
const lines = z.union([z.string(), z.array(z.string())])
  .transform((v) => typeof v === "string" ? v.split("\n").filter((l) => l.trim() !== "") : v);

/** Schema of the local provider: each block is a manager subprocess on this machine. */
export const LocalProviderSchema = z.object({ type: z.literal("local") }).strict();

/** Schema of the Slurm provider: each block is a batch job (see `slurm_provider.ts`). */
export const SlurmProviderSchema = z.object({
  type: z.literal("slurm"),
  /** `--partition`; null for the cluster's default. */
  partition: z.string().min(1).nullable().default(null),
  /** `--account`. */
  account: z.string().min(1).nullable().default(null),
  /** `--qos`. */
  qos: z.string().min(1).nullable().default(null),
  /** `--time` of each block, e.g. `"01:00:00"`; null for the partition's limit. */
  walltime: z.string().regex(/^(\d+-)?\d+(:\d{1,2}){0,2}$/, "expected [D-]HH:MM:SS")
    .nullable().default(null),
  /** `--exclusive`: blocks do not share their nodes. */
  exclusive: z.boolean().default(false),
  /** Extra `#SBATCH` lines (with or without the prefix). */
  scheduler_options: lines.default([]),
  /** Shell lines run in the job before the manager (`module load ...`). */
  worker_init: lines.default([]),
  /** `srun` starts one manager per node; `auto` uses it when `nodes_per_block` > 1. */
  launcher: z.enum(["auto", "srun", "none"]).default("auto"),
  /** Seconds a scheduler command (`sbatch`, `squeue`, `scancel`) may take. */
  command_timeout_s: z.number().positive().default(30),
}).strict();

/** Schema of the Grid Engine provider: each block is a batch job (see `gridengine_provider.ts`). */
export const GridEngineProviderSchema = z.object({
  type: z.literal("gridengine"),
  /** `-q`: the queue; null for any queue the job fits. */
  queue: z.string().min(1).nullable().default(null),
  /** `-P`: the project the blocks are accounted to. */
  project: z.string().min(1).nullable().default(null),
  /** `-l h_rt=` of each block, e.g. `"01:00:00"` or seconds; null for the queue's limit. */
  walltime: z.string().regex(/^\d+(:\d{1,2}){0,2}$/, "expected HH:MM:SS or seconds")
    .nullable().default(null),
  /** `-pe <name> <nodes_per_block>`: needed when `nodes_per_block` > 1 (allocation_rule 1). */
  parallel_environment: z.string().min(1).nullable().default(null),
  /** Extra `#$` lines (with or without the prefix). */
  scheduler_options: lines.default([]),
  /** Shell lines run in the job before the manager (`module load ...`). */
  worker_init: lines.default([]),
  /** `qrsh` starts one manager per host (`qrsh -inherit`); `auto` uses it when `nodes_per_block` > 1. */
  launcher: z.enum(["auto", "qrsh", "none"]).default("auto"),
  /** Seconds a scheduler command (`qsub`, `qstat`, `qacct`, `qdel`) may take. */
  command_timeout_s: z.number().positive().default(30),
}).strict();

/** Schema of the engine's provider: where blocks of managers run. */
export const ProviderConfigSchema = z.discriminatedUnion("type", [
  LocalProviderSchema,
  SlurmProviderSchema,
  GridEngineProviderSchema,
]);

/** The validated `provider` member of the `engine` section. */
export type ProviderConfig = z.infer<typeof ProviderConfigSchema>;

/**
 * What is wrong with a provider config given the engine's `nodes_per_block` (the field under
 * `provider` and a message), or undefined: a Grid Engine block of several nodes, or started
 * with `qrsh`, needs a parallel environment.
 */
export function providerConfigProblem(
  config: ProviderConfig,
  nodesPerBlock: number,
): { field: string; message: string } | undefined {
  if (config.type !== "gridengine" || config.parallel_environment !== null) return undefined;
  if (nodesPerBlock === 1 && config.launcher !== "qrsh") return undefined;
  return {
    field: "parallel_environment",
    message: `a Grid Engine block of ${nodesPerBlock} node(s) started with ` +
      `launcher "${config.launcher}" needs a parallel environment: name one of the cluster's ` +
      `("qconf -spl"), best with allocation_rule 1 (one slot per host)`,
  };
}

/** What {@linkcode providerFromConfig} needs besides the provider's own config. */
export interface ProviderContext {
  /** The engine's run directory: block logs and batch scripts go there. */
  runDir: string;
  /** Seconds a stopped local block may take before it is killed. */
  graceS: number;
  /** The engine's `nodes_per_block`. */
  nodesPerBlock: number;
}

/** Builds the provider named by the config. */
export function providerFromConfig(config: ProviderConfig, context: ProviderContext): Provider {
  switch (config.type) {
    case "local":
      return new LocalProvider({ logDir: context.runDir, graceS: context.graceS });
    case "slurm":
      return new SlurmProvider({
        runDir: context.runDir,
        partition: config.partition,
        account: config.account,
        qos: config.qos,
        walltime: config.walltime,
        exclusive: config.exclusive,
        schedulerOptions: config.scheduler_options,
        workerInit: config.worker_init,
        nodesPerBlock: context.nodesPerBlock,
        ...(config.launcher === "auto" ? {} : { launcher: config.launcher }),
        commandTimeoutS: config.command_timeout_s,
      });
    case "gridengine":
      return new GridEngineProvider({
        runDir: context.runDir,
        queue: config.queue,
        project: config.project,
        walltime: config.walltime,
        parallelEnvironment: config.parallel_environment,
        schedulerOptions: config.scheduler_options,
        workerInit: config.worker_init,
        nodesPerBlock: context.nodesPerBlock,
        ...(config.launcher === "auto" ? {} : { launcher: config.launcher }),
        commandTimeoutS: config.command_timeout_s,
      });
  }
}
