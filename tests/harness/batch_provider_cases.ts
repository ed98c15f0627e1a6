/**
 * One contract for the batch-system providers (Slurm, Grid Engine), run by each provider's test
 * file against its real private scheduler: tasks run inside a job, blocks scale out under load
 * and back in, a block killed by the scheduler is replaced and its task retried, a bad option is
 * a clear error while the engine keeps running, and a whole endpoint runs SDK tasks in jobs.
 * Each case takes the provider's config and the scheduler's own pieces (the job id variable
 * jobs see, how to list or kill jobs).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  createEngine,
  type EngineConfigInput,
  type HighThroughputEngine,
} from "../../endpoint/engine/mod.ts";
import { taskBuffer, until, valueOf } from "../../endpoint/engine/_test_helpers.ts";
import { clientOf, privateVhost, startEndpoint, startService } from "./stack.ts";
import { waitForResult } from "./wait.ts";

/** The `provider` section of the engine config. */
export type ProviderInput = NonNullable<EngineConfigInput["provider"]>;

/** What a case needs to know of the scheduler. */
export interface Scheduler {
  /** The variable that holds the job id inside a job (`SLURM_JOB_ID`, `JOB_ID`). */
  jobIdEnv: string;
  /** The suffix of the job scripts the provider writes (`sbatch`, `qsub`). */
  scriptSuffix: string;
  /** Ids of the jobs the scheduler still runs. */
  runningJobs(): Promise<Set<string>>;
  /** Kills a job the way an operator would (`scancel`, `qdel`). */
  kill(jobId: string): Promise<void>;
}

/**
 * Puts the scheduler's client environment into this process's (the provider runs its scheduler
 * commands here) and returns a runner of client commands that asserts a zero exit and returns
 * the command's stdout.
 */
export function schedulerClient(
  env: Record<string, string>,
): (cmd: string, args: string[]) => Promise<string> {
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  return async (cmd, args) => {
    const out = await new Deno.Command(cmd, { args, env }).output();
    assert.equal(out.code, 0, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    return new TextDecoder().decode(out.stdout);
  };
}

/** Asserts that each of `lines` is a whole line of the job script `script`. */
export function assertScriptLines(script: string, lines: readonly string[]): void {
  for (const line of lines) {
    assert.ok(script.split("\n").includes(line), `missing ${line} in\n${script}`);
  }
}

/**
 * Runs `body` with an engine of `config` whose run directory is `<dir>/run`, in a temporary
 * `dir` removed afterwards; the engine is closed after `body`.
 */
async function withEngine(
  config: EngineConfigInput,
  body: (engine: HighThroughputEngine, dir: string, runDir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const runDir = join(dir, "run");
  try {
    await using engine = await createEngine(
      { strategy_period: 1, ...config, run_dir: runDir },
      { graceS: 2 },
    );
    await body(engine, dir, runDir);
    await engine.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A task runs in the block's job (its job id variable equals the block's `jobId`); the script is
 * mode 0700 and the job's log has the block's start line. `inJob` checks more while it runs.
 */
export async function tasksRunInAJob(
  provider: ProviderInput,
  scheduler: Scheduler,
  inJob: (jobId: string) => Promise<void> = async () => {},
): Promise<void> {
  const config = { provider, init_blocks: 1, max_workers_per_node: 1 };
  await withEngine(config, async (engine, _dir, runDir) => {
    const jobOf = (name: string) => ({ job: Deno.env.get(name) ?? null, pid: Deno.pid });
    const r = valueOf(await engine.submit("t1", taskBuffer(jobOf, [scheduler.jobIdEnv]))) as {
      job: string | null;
    };
    const block = engine.blocks[0]!;
    assert.match(String(r.job), /^\d+$/);
    assert.equal(r.job, block.jobId);
    const script = await Deno.stat(join(runDir, `block_1.${scheduler.scriptSuffix}`));
    assert.equal(script.mode! & 0o777, 0o700);
    assert.match(await Deno.readTextFile(join(runDir, "block_1.log")), /funcX block 1: job \d+/);
    await until(() => engine.status().blocks?.running === 1, "the block to be seen running");
    await inJob(r.job!);
  });
}

/** Six slow tasks on zero blocks start two (`max_blocks`); idle, both are stopped again. */
export async function blocksScaleOutAndIn(
  provider: ProviderInput,
  scheduler: Scheduler,
): Promise<void> {
  const config = {
    provider,
    init_blocks: 0,
    min_blocks: 0,
    max_blocks: 2,
    max_workers_per_node: 1,
    max_idletime: 2,
  };
  await withEngine(config, async (engine) => {
    assert.equal(engine.blocks.length, 0);
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, engine.blocks.length)), 50);
    const slow = async (name: string) => {
      await new Promise((r) => setTimeout(r, 2000));
      return Deno.env.get(name);
    };
    const results = await Promise.all(
      Array.from(
        { length: 6 },
        (_, i) => engine.submit(`s${i}`, taskBuffer(slow, [scheduler.jobIdEnv])),
      ),
    );
    const jobs = new Set(results.map(valueOf) as string[]);
    assert.equal(most, 2, "two blocks under load");
    assert.ok(jobs.size >= 1 && jobs.size <= 2, `jobs ${[...jobs]}`);
    await until(() => engine.blocks.length === 0, "scale in to min_blocks (0)", 60_000);
    clearInterval(watch);
    await until(() => engine.status().blocks?.completed === 2, "two blocks counted completed");
    // A stopped block leaves the engine once it is cancelled; the scheduler ends its job a moment
    // later (later still on a busy machine), so poll, with a bound.
    let left = await scheduler.runningJobs();
    for (let i = 0; i < 300 && [...jobs].some((id) => left.has(id)); i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = await scheduler.runningJobs();
    }
    for (const id of jobs) assert.ok(!left.has(id), `job ${id} still running: ${[...left]}`);
  });
}

/**
 * A block killed by the scheduler while its task runs is replaced, and the task runs again in
 * the new block (`max_retries_on_manager_lost: 1`); the engine counts the block failed.
 */
export async function killedBlockIsReplaced(
  provider: ProviderInput,
  scheduler: Scheduler,
): Promise<void> {
  const config = {
    provider,
    init_blocks: 1,
    min_blocks: 1,
    max_blocks: 1,
    max_workers_per_node: 1,
    max_retries_on_manager_lost: 1,
  };
  await withEngine(config, async (engine, dir) => {
    const marked = async (d: string, name: string) => {
      const job = Deno.env.get(name)!;
      await Deno.writeTextFile(`${d}/started-${job}`, "");
      // The first run waits to be killed; the retry finishes at once.
      const runs = [...Deno.readDirSync(d)].filter((e) => e.name.startsWith("started-")).length;
      if (runs === 1) await new Promise((r) => setTimeout(r, 60_000));
      return job;
    };
    const result = engine.submit("c1", taskBuffer(marked, [dir, scheduler.jobIdEnv]));
    await until(
      () => [...Deno.readDirSync(dir)].some((e) => e.name.startsWith("started-")),
      "the task to start in the first block",
      60_000,
    );
    const first = engine.blocks[0]!.jobId!;
    await scheduler.kill(first);
    const second = valueOf(await result) as string;
    assert.notEqual(second, first);
    assert.match(second, /^\d+$/);
    assert.ok((engine.status().blocks?.failed ?? 0) >= 1, JSON.stringify(engine.status()));
  });
}

/**
 * A provider config the scheduler refuses: the engine runs, its status shows the refusal
 * (matching each of `says`), tasks queue and no block exists.
 */
export async function badOptionIsAClearError(
  provider: ProviderInput,
  says: readonly RegExp[],
): Promise<void> {
  await withEngine({ provider, init_blocks: 1 }, async (engine) => {
    assert.equal(engine.state, "running");
    for (const re of says) assert.match(String(engine.status().provider_error), re);
    // Tasks still queue (they would run once the config is fixed); nothing crashed.
    const pending = engine.submit("p1", taskBuffer(() => 1));
    await until(() => engine.status().pending_tasks === 1, "the task to queue");
    assert.equal(engine.blocks.length, 0);
    await engine.close();
    await pending.catch(() => {});
  });
}

/**
 * A whole endpoint (service, broker, daemon), configured by `configure` and then given `engine`
 * as its engine section, runs an SDK task in a job: the result is the job id.
 */
export async function endpointRunsTasksInJobs(
  engine: Record<string, unknown>,
  scheduler: Pick<Scheduler, "jobIdEnv">,
): Promise<void> {
  await using site = await privateVhost("funcx-batch-ep-");
  const { access, amqpUrl, dir } = site;
  const service = await startService({ dir, amqpUrl, broker: access });
  try {
    const ep = await startEndpoint({ service, dir, workers: 1, config: { engine } });
    try {
      const fx = clientOf(service);
      const fnId = await fx.registerFunction(function batchJob(name: string) {
        return Deno.env.get(name) ?? "none";
      });
      const taskId = await fx.run(fnId, ep.endpointId, { args: [scheduler.jobIdEnv] });
      const job = await waitForResult(fx, taskId, 90_000);
      assert.match(String(job), /^\d+$/);
    } finally {
      await ep.process.stop();
    }
  } finally {
    await service.process.stop();
  }
}
