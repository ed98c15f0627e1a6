/**
 * The engine with the Slurm provider against a real one-node Slurm cluster (tests/harness/slurm.ts):
 * the batch-provider contract (tests/harness/batch_provider_cases.ts): tasks run in batch jobs,
 * blocks scale from zero to two and back, a cancelled block is replaced and its task retried, a
 * bad partition is a clear error in the engine's status, and a whole endpoint runs SDK tasks.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SlurmProvider } from "../endpoint/engine/mod.ts";
import {
  assertScriptLines,
  badOptionIsAClearError,
  blocksScaleOutAndIn,
  endpointRunsTasksInJobs,
  killedBlockIsReplaced,
  type Scheduler,
  schedulerClient,
  tasksRunInAJob,
} from "./harness/batch_provider_cases.ts";
import { sharedSlurm } from "./harness/slurm.ts";

// sbatch, squeue and scancel (run by the provider in this process) find the cluster through it.
const run = schedulerClient(await sharedSlurm());

const slurmScheduler: Scheduler = {
  jobIdEnv: "SLURM_JOB_ID",
  scriptSuffix: "sbatch",
  runningJobs: async () =>
    new Set(
      (await run("squeue", ["-h", "-t", "RUNNING", "-o", "%i"])).split("\n").map((l) => l.trim())
        .filter((l) => l !== ""),
    ),
  kill: async (jobId) => void await run("scancel", [jobId]),
};

Deno.test("SlurmProvider: the batch script carries options, a launcher and the env (mode 0700)", async () => {
  const dir = await Deno.makeTempDir();
  const p = new SlurmProvider({
    runDir: dir,
    partition: "debug",
    walltime: "00:10:00",
    nodesPerBlock: 2,
    exclusive: true,
    schedulerOptions: ["--mem=1G", "#SBATCH --constraint=x"],
    workerInit: ["module load deno"],
  });
  const s = p.script("7", ["deno", "run", "a b.ts"], { FUNCX_MANAGER_SECRET: "it's" });
  assertScriptLines(s, [
    "#SBATCH --partition=debug",
    "#SBATCH --time=00:10:00",
    "#SBATCH --nodes=2",
    "#SBATCH --exclusive",
    "#SBATCH --mem=1G",
    "#SBATCH --constraint=x",
    `#SBATCH --output=${join(dir, "block_7.log")}`,
    "module load deno",
    `export FUNCX_MANAGER_SECRET='it'\\''s'`,
  ]);
  assert.match(s, /srun --nodes=2 --ntasks-per-node=1 .* deno run 'a b\.ts'/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SlurmProvider: tasks run inside a real Slurm job", async () => {
  await tasksRunInAJob(
    { type: "slurm", partition: "debug", walltime: "00:10:00" },
    slurmScheduler,
  );
});

Deno.test("SlurmProvider: blocks scale from zero to two under load and back to min_blocks", async () => {
  await blocksScaleOutAndIn({ type: "slurm" }, slurmScheduler);
});

Deno.test("SlurmProvider: a block cancelled with scancel is replaced and its task retried", async () => {
  await killedBlockIsReplaced({ type: "slurm" }, slurmScheduler);
});

Deno.test("SlurmProvider: a bad partition is a clear error in the status; the engine keeps running", async () => {
  await badOptionIsAClearError({ type: "slurm", partition: "no-such-partition" }, [
    /partition/i,
    /sbatch/,
  ]);
});

Deno.test("SlurmProvider: a whole endpoint runs SDK tasks in Slurm jobs", async () => {
  await endpointRunsTasksInJobs({
    provider: { type: "slurm", partition: "debug", walltime: "00:10:00" },
    init_blocks: 0,
    max_blocks: 1,
    strategy_period: 1,
  }, slurmScheduler);
});
