/**
 * The MPI mode of the engine (`engine.mpi` in `config.yaml`): which launcher starts an MPI task's
 * ranks, and the launcher command (`$FUNCX_MPI_PREFIX`) for the nodes a task was given. The
 * manager of a block ({@link ./mpi_runner.ts}) builds the prefix from a task's placement and runs
 * the task's command with it; these functions are pure, so each launcher's flags are unit-tested
 * here even where that launcher cannot run.
 *
 * @module
 */
import { delimiter, join } from "node:path";
import { z } from "zod";

/** Schema of `engine.mpi`: null (the default) for no MPI mode. */
export const MpiConfigSchema = z.object({
  /** The program that starts the ranks. */
  launcher: z.enum(["mpiexec", "mpirun", "srun"]).default("mpiexec"),
  /** The MPI library `mpiexec`/`mpirun` belong to; their flags differ (`srun` ignores it). */
  flavor: z.enum(["openmpi", "mpich"]).default("openmpi"),
  /**
   * Options added after the launcher's own flags, e.g. `--allow-run-as-root --oversubscribe`
   * for OpenMPI run as root on few cores, or `--mpi=pmix` for srun.
   */
  launcher_options: z.string().default(""),
  /**
   * Ranks a node of a block may run at once, over all its MPI tasks; null for the number the
   * batch system gives (Grid Engine's `PE_HOSTFILE`, Slurm's `SLURM_CPUS_ON_NODE`), else the
   * node's cores.
   */
  slots_per_node: z.number().int().min(1).nullable().default(null),
}).strict();

/** The validated `engine.mpi` section. */
export type MpiConfig = z.infer<typeof MpiConfigSchema>;

/** Where an MPI task's ranks run: the hosts it was given and how many ranks. */
export interface MpiPlacement {
  /** One host per node, in order. */
  hosts: readonly string[];
  /** Most ranks on each node. */
  ranksPerNode: number;
  /** Ranks in all. */
  numRanks: number;
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The launcher command for `placement`, as `$FUNCX_MPI_PREFIX` holds it:
 * OpenMPI `mpiexec -n R --map-by ppr:P:node -H h1:P,h2:P`, MPICH `mpiexec -n R -ppn P -hosts
 * h1,h2`, or `srun -N N -n R --ntasks-per-node=P -w h1,h2`, each followed by `launcher_options`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mpiPrefix } from "./mpi_launcher.ts";
 * const config = { launcher: "srun", flavor: "openmpi", launcher_options: "", slots_per_node: null } as const;
 * assert.equal(
 *   mpiPrefix(config, { hosts: ["n1", "n2"], ranksPerNode: 2, numRanks: 4 }),
 *   "srun -N 2 -n 4 --ntasks-per-node=2 -w n1,n2",
 * );
 * ```
 */
export function mpiPrefix(config: MpiConfig, placement: MpiPlacement): string {
  const { hosts, ranksPerNode: p, numRanks: r } = placement;
  let words: string[];
  if (config.launcher === "srun") {
    words = ["srun", "-N", `${hosts.length}`, "-n", `${r}`, `--ntasks-per-node=${p}`, "-w"];
    words.push(quote(hosts.join(",")));
  } else if (config.flavor === "mpich") {
    words = [config.launcher, "-n", `${r}`, "-ppn", `${p}`, "-hosts", quote(hosts.join(","))];
  } else {
    words = [config.launcher, "-n", `${r}`, "--map-by", `ppr:${p}:node`, "-H"];
    words.push(quote(hosts.map((h) => `${h}:${p}`).join(",")));
  }
  const options = config.launcher_options.trim();
  return options === "" ? words.join(" ") : `${words.join(" ")} ${options}`;
}

/**
 * The environment an MPI task's command gets: `FUNCX_MPI_PREFIX` (see {@linkcode mpiPrefix}),
 * `FUNCX_MPI_NODES` (comma-separated hosts), `FUNCX_MPI_NUM_NODES`, `FUNCX_MPI_NUM_RANKS` and
 * `FUNCX_MPI_RANKS_PER_NODE`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mpiEnv } from "./mpi_launcher.ts";
 * const config = { launcher: "mpiexec", flavor: "mpich", launcher_options: "", slots_per_node: null } as const;
 * const env = mpiEnv(config, { hosts: ["a", "b"], ranksPerNode: 1, numRanks: 2 });
 * assert.equal(env.FUNCX_MPI_NODES, "a,b");
 * assert.equal(env.FUNCX_MPI_PREFIX, "mpiexec -n 2 -ppn 1 -hosts a,b");
 * ```
 */
export function mpiEnv(config: MpiConfig, placement: MpiPlacement): Record<string, string> {
  return {
    FUNCX_MPI_PREFIX: mpiPrefix(config, placement),
    FUNCX_MPI_NODES: placement.hosts.join(","),
    FUNCX_MPI_NUM_NODES: String(placement.hosts.length),
    FUNCX_MPI_NUM_RANKS: String(placement.numRanks),
    FUNCX_MPI_RANKS_PER_NODE: String(placement.ranksPerNode),
  };
}

/**
 * Where `program` is on `path` (a `PATH` value), or `undefined` when no directory of it holds
 * an executable file of that name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findOnPath } from "./mpi_launcher.ts";
 * assert.equal(findOnPath("sh", "/nonexistent:/bin:/usr/bin")?.endsWith("/sh"), true);
 * assert.equal(findOnPath("no-such-launcher", "/bin"), undefined);
 * ```
 */
export function findOnPath(program: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, program);
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * The provider config an engine in MPI mode uses: one manager per block, whatever its node
 * count, since that manager shares all the block's nodes among its MPI tasks (a provider's
 * `launcher: auto` becomes `none`). Without MPI mode, the config as given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mpiProviderConfig } from "./mpi_launcher.ts";
 * const provider = { type: "slurm", launcher: "auto" } as const;
 * assert.equal(mpiProviderConfig(provider, null), provider);
 * assert.equal(mpiProviderConfig(provider, { launcher: "srun" }).launcher, "none");
 * ```
 */
export function mpiProviderConfig<P extends { type: string; launcher?: string }>(
  provider: P,
  mpi: unknown,
): P {
  if (mpi === null || provider.launcher !== "auto") return provider;
  return { ...provider, launcher: "none" };
}

/**
 * Why a provider config does not suit MPI mode (words for a config error at
 * `engine.provider.launcher`), or `undefined`: a launcher that starts a manager on every node
 * would have each of them share out the same nodes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mpiProviderProblem } from "./mpi_launcher.ts";
 * assert.match(mpiProviderProblem({ type: "slurm", launcher: "srun" }, 2) ?? "", /none/);
 * assert.equal(mpiProviderProblem({ type: "slurm", launcher: "auto" }, 2), undefined);
 * ```
 */
export function mpiProviderProblem(
  provider: { type: string; launcher?: string },
  nodesPerBlock: number,
): string | undefined {
  const launcher = provider.launcher;
  if (nodesPerBlock === 1 || launcher === undefined || launcher === "auto" || launcher === "none") {
    return undefined;
  }
  return `in MPI mode one manager runs per block and shares its ${nodesPerBlock} nodes among ` +
    `MPI tasks, so the provider's launcher must be "auto" or "none", not "${launcher}"`;
}
