/**
 * The `engine` section of the endpoint's `config.yaml`: its schema, with the workers'
 * permissions and the blocks' provider, validated once at the edge into an
 * {@linkcode EngineConfig} that the engine and its managers read without further checks.
 *
 * @module
 */
import { z } from "zod";
import { SEND_AHEAD } from "./send_ahead.ts";
import { containerConfigProblem, ContainerConfigSchema } from "./container.ts";
import { MpiConfigSchema, mpiProviderProblem } from "./mpi_launcher.ts";
import { providerConfigProblem, ProviderConfigSchema } from "./provider_config.ts";

const strings = z.array(z.string().min(1));

/** Schema of the workers' Deno permissions. */
export const PermissionsSchema = z.object({
  /** Everything allowed; when true the lists are ignored. */
  all: z.boolean().default(true),
  /** Readable paths. */
  read: strings.default([]),
  /** Writable paths. */
  write: strings.default([]),
  /** Reachable hosts. */
  net: strings.default([]),
  /** Readable environment variables, or `true` for all. */
  env: z.union([z.literal(true), strings]).default([]),
  /** Runnable programs. */
  run: strings.default([]),
}).strict();

/** Schema of the `engine` section of `config.yaml`; every field has a default. */
export const EngineConfigSchema = z.object({
  /** Where blocks run: `{type: "local"}` (default) or `{type: "slurm", partition, ...}`. */
  provider: ProviderConfigSchema.prefault({ type: "local" }),
  /**
   * Blocks started at once, kept and never exceeded: the older spelling of
   * `init_blocks = min_blocks = max_blocks` (each of those given wins); a parsed config
   * carries `managers = init_blocks`, so parsing it again gives the same config.
   */
  managers: z.number().int().min(0).optional(),
  /** Blocks started with the engine. @default managers, else 1 */
  init_blocks: z.number().int().min(0).optional(),
  /** Blocks kept when idle. @default managers, else init_blocks (local) or 0 (batch) */
  min_blocks: z.number().int().min(0).optional(),
  /** Blocks never exceeded. @default managers, else max(1, init_blocks, min_blocks) */
  max_blocks: z.number().int().min(1).optional(),
  /**
   * How a local block runs its manager: `in_process` (default), inside the daemon, which then
   * starts the workers itself (one process and one hop fewer per task); `process`, a manager
   * subprocess per block, as batch blocks have on their nodes. Only the local provider reads it.
   */
  local_manager: z.enum(["in_process", "process"]).default("in_process"),
  /** Nodes per block; one manager runs on each. */
  nodes_per_block: z.number().int().min(1).default(1),
  /** Slots wanted per outstanding task (0–1) when scaling out. */
  parallelism: z.number().min(0).max(1).default(1),
  /** Seconds without tasks before blocks above `min_blocks` are stopped. */
  max_idletime: z.number().min(0).default(60),
  /** Seconds between scaling decisions (and provider polls). */
  strategy_period: z.number().positive().default(5),
  /** Upper bound on workers per manager. */
  max_workers_per_node: z.number().int().min(1).default(navigator.hardwareConcurrency),
  /** Cores per worker: workers = min(max_workers_per_node, floor(cores / cores_per_worker)). */
  cores_per_worker: z.number().positive().default(1),
  /** GB of heap per worker (also caps workers by available memory); null for no limit. */
  mem_per_worker: z.number().positive().nullable().default(null),
  /** Accelerator ids (or a count N for "0".."N-1"); one worker pinned to each. */
  available_accelerators: z.union([
    z.number().int().min(0).transform((n) => Array.from({ length: n }, (_, i) => String(i))),
    strings,
  ]).default([]),
  /** Shell commands run before workers start. */
  worker_init: z.string().default(""),
  /** Deno permissions of the workers. */
  permissions: PermissionsSchema.prefault({}),
  /** Address the interchange listens on for managers. */
  address: z.string().min(1).default("127.0.0.1"),
  /** Port the interchange listens on; 0 for any free port. */
  port: z.number().int().min(0).max(65535).default(0),
  /** Seconds between heartbeats, both ways. */
  heartbeat_period: z.number().positive().default(30),
  /** Seconds of silence before a manager is declared lost. */
  heartbeat_threshold: z.number().positive().default(120),
  /** Tasks a manager may hold beyond its worker count. */
  prefetch_capacity: z.number().int().min(0).default(10),
  /**
   * Tasks a busy worker may be sent beyond the one it runs, while tasks wait and its tasks take
   * under 10 ms (taken back if the one it runs takes longer); 0 for none.
   */
  worker_send_ahead: z.number().int().min(0).default(SEND_AHEAD),
  /**
   * Whether workers may have transparent huge pages where the kernel gives them: off by default,
   * as they make hundreds of workers start slower and each one larger (`huge_pages.ts`); on for
   * tasks that work on large arrays, where fewer TLB misses may pay.
   */
  worker_huge_pages: z.boolean().default(false),
  /** Times a task is retried when its manager is lost. */
  max_retries_on_manager_lost: z.number().int().min(0).default(0),
  /**
   * Times a task is run again when its worker, manager or block was lost (a system failure, not
   * an error of the task) before it fails with `WorkerLost`/`ManagerLost`; as Globus Compute,
   * off by default. The result says how many attempts it took.
   */
  max_retries_on_system_failure: z.number().int().min(0).default(0),
  /** Seconds a task may run before its worker is killed; null for no limit. */
  task_walltime_s: z.number().positive().nullable().default(null),
  /** Folder of manager and worker logs; null for a temporary one removed on close. */
  run_dir: z.string().min(1).nullable().default(null),
  /**
   * MPI mode: `MPIFunction` tasks run under this launcher on the block's nodes, which one
   * manager per block shares among them; null for none.
   */
  mpi: MpiConfigSchema.nullable().default(null),
  ...ContainerConfigSchema.shape,
}).strict().transform((c, ctx) => {
  const problem = containerConfigProblem(c);
  if (problem) ctx.addIssue({ code: "custom", path: [problem.field], message: problem.message });
  const bad = providerConfigProblem(c.provider, c.nodes_per_block);
  if (bad) ctx.addIssue({ code: "custom", path: ["provider", bad.field], message: bad.message });
  const mpiProblem = c.mpi ? mpiProviderProblem(c.provider, c.nodes_per_block) : undefined;
  if (mpiProblem) {
    ctx.addIssue({ code: "custom", path: ["provider", "launcher"], message: mpiProblem });
  }
  const init = c.init_blocks ?? c.managers ?? 1;
  const min = c.min_blocks ?? c.managers ?? (c.provider.type === "local" ? init : 0);
  const max = c.max_blocks ?? c.managers ?? Math.max(1, init, min);
  if (max < 1) {
    ctx.addIssue({
      code: "custom",
      path: ["max_blocks"],
      message: "max_blocks must be at least 1",
    });
  } else if (min > max || init > max) {
    ctx.addIssue({
      code: "custom",
      path: ["max_blocks"],
      message: `max_blocks (${max}) is below init_blocks (${init}) or min_blocks (${min})`,
    });
  }
  return { ...c, managers: init, init_blocks: init, min_blocks: min, max_blocks: max };
});

/** The validated `engine` section. */
export type EngineConfig = z.infer<typeof EngineConfigSchema>;

/** The `engine` section as written (every field optional). */
export type EngineConfigInput = z.input<typeof EngineConfigSchema>;
