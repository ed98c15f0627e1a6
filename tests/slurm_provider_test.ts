/**
 * The engine with the Slurm provider against a real one-node Slurm cluster (tests/harness/slurm.ts):
 * tasks run in batch jobs, blocks scale from zero to two and back, a cancelled block is replaced
 * and its task retried, and a bad partition is a clear error in the engine's status.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createEngine, SlurmProvider } from "../endpoint/engine/mod.ts";
import { taskBuffer, until, valueOf } from "../endpoint/engine/_test_helpers.ts";
import { parse, stringify } from "yaml";
import { runDeno } from "./harness/process.ts";
import { sharedSlurm } from "./harness/slurm.ts";
import {
  clientOf,
  createVhost,
  deleteVhost,
  sharedBroker,
  startEndpoint,
  startService,
} from "./harness/stack.ts";
import { waitForResult } from "./harness/wait.ts";

const slurm = await sharedSlurm();
// sbatch, squeue and scancel (run by the provider in this process) find the cluster through it.
for (const [k, v] of Object.entries(slurm)) Deno.env.set(k, v);

const jobOf = () => ({ job: Deno.env.get("SLURM_JOB_ID") ?? null, pid: Deno.pid });

async function squeue(): Promise<string> {
  const out = await new Deno.Command("squeue", { args: ["-h", "-o", "%i %T %j"], env: slurm })
    .output();
  return new TextDecoder().decode(out.stdout).trim();
}

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
  for (
    const line of [
      "#SBATCH --partition=debug",
      "#SBATCH --time=00:10:00",
      "#SBATCH --nodes=2",
      "#SBATCH --exclusive",
      "#SBATCH --mem=1G",
      "#SBATCH --constraint=x",
      `#SBATCH --output=${join(dir, "block_7.log")}`,
      "module load deno",
      `export FUNCX_MANAGER_SECRET='it'\\''s'`,
    ]
  ) assert.ok(s.split("\n").includes(line), `missing ${line} in\n${s}`);
  assert.match(s, /srun --nodes=2 --ntasks-per-node=1 .* deno run 'a b\.ts'/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SlurmProvider: tasks run inside a real Slurm job", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "slurm", partition: "debug", walltime: "00:10:00" },
    init_blocks: 1,
    max_workers_per_node: 1,
    strategy_period: 1,
    run_dir: dir,
  }, { graceS: 2 });
  const r = valueOf(await engine.submit("t1", taskBuffer(jobOf))) as { job: string | null };
  const block = engine.blocks[0]!;
  assert.match(String(r.job), /^\d+$/);
  assert.equal(r.job, block.jobId);
  const script = await Deno.stat(join(dir, "block_1.sbatch"));
  assert.equal(script.mode! & 0o777, 0o700);
  assert.match(await Deno.readTextFile(join(dir, "block_1.log")), /funcX block 1: job \d+/);
  await until(() => engine.status().blocks?.running === 1, "the block to be seen running");
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SlurmProvider: blocks scale from zero to two under load and back to min_blocks", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "slurm" },
    init_blocks: 0,
    min_blocks: 0,
    max_blocks: 2,
    max_workers_per_node: 1,
    max_idletime: 2,
    strategy_period: 1,
    run_dir: dir,
  }, { graceS: 2 });
  assert.equal(engine.blocks.length, 0);
  let most = 0;
  const watch = setInterval(() => (most = Math.max(most, engine.blocks.length)), 50);
  const slow = async () => {
    await new Promise((r) => setTimeout(r, 2000));
    return Deno.env.get("SLURM_JOB_ID");
  };
  const results = await Promise.all(
    Array.from({ length: 6 }, (_, i) => engine.submit(`s${i}`, taskBuffer(slow))),
  );
  const jobs = new Set(results.map(valueOf));
  assert.equal(most, 2, "two blocks under load");
  assert.ok(jobs.size >= 1 && jobs.size <= 2, `jobs ${[...jobs]}`);
  await until(() => engine.blocks.length === 0, "scale in to min_blocks (0)", 60_000);
  clearInterval(watch);
  await until(() => engine.status().blocks?.completed === 2, "two blocks counted completed");
  // A stopped block leaves the engine once scancel is sent; Slurm ends its job a moment later
  // (later still on a busy machine), so poll, with a bound.
  let left = await squeue();
  for (let i = 0; i < 300 && [...jobs].some((id) => left.includes(`${id} RUNNING`)); i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = await squeue();
  }
  for (const id of jobs) assert.ok(!left.includes(`${id} RUNNING`), left);
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SlurmProvider: a block cancelled with scancel is replaced and its task retried", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "slurm" },
    init_blocks: 1,
    min_blocks: 1,
    max_blocks: 1,
    max_workers_per_node: 1,
    max_retries_on_manager_lost: 1,
    strategy_period: 1,
    run_dir: join(dir, "run"),
  }, { graceS: 2 });
  const marked = async (d: string) => {
    const job = Deno.env.get("SLURM_JOB_ID")!;
    await Deno.writeTextFile(`${d}/started-${job}`, "");
    // The first run waits for scancel; the retry finishes at once.
    const runs = [...Deno.readDirSync(d)].filter((e) => e.name.startsWith("started-")).length;
    if (runs === 1) await new Promise((r) => setTimeout(r, 60_000));
    return job;
  };
  const result = engine.submit("c1", taskBuffer(marked, [dir]));
  await until(
    () => [...Deno.readDirSync(dir)].some((e) => e.name.startsWith("started-")),
    "the task to start in the first block",
    60_000,
  );
  const first = engine.blocks[0]!.jobId!;
  const cancel = await new Deno.Command("scancel", { args: [first], env: slurm }).output();
  assert.equal(cancel.code, 0, new TextDecoder().decode(cancel.stderr));
  const second = valueOf(await result) as string;
  assert.notEqual(second, first);
  assert.match(second, /^\d+$/);
  assert.ok((engine.status().blocks?.failed ?? 0) >= 1, JSON.stringify(engine.status()));
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SlurmProvider: a bad partition is a clear error in the status; the engine keeps running", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "slurm", partition: "no-such-partition" },
    init_blocks: 1,
    strategy_period: 1,
    run_dir: dir,
  }, { graceS: 2 });
  assert.equal(engine.state, "running");
  assert.match(String(engine.status().provider_error), /partition/i);
  assert.match(String(engine.status().provider_error), /sbatch/);
  // Tasks still queue (they would run once the config is fixed); nothing crashed.
  const pending = engine.submit("p1", taskBuffer(() => 1));
  await until(() => engine.status().pending_tasks === 1, "the task to queue");
  assert.equal(engine.blocks.length, 0);
  await engine.close();
  await pending.catch(() => {});
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SlurmProvider: a whole endpoint runs SDK tasks in Slurm jobs", async () => {
  const access = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-slurm-ep-" });
  const vhost = `funcx-${crypto.randomUUID().slice(0, 8)}`;
  const service = await startService({
    dir,
    amqpUrl: await createVhost(access, vhost),
    broker: access,
  });
  try {
    // The endpoint's config.yaml, written as `configure` would, with a Slurm engine.
    const env = { ...service.env, FUNCX_CONFIG_DIR: join(dir, "config") };
    await runDeno("cli/funcx_endpoint.ts", ["configure", "default"], env);
    const file = join(dir, "config", "default", "config.yaml");
    const config = parse(await Deno.readTextFile(file)) as Record<string, unknown>;
    config["engine"] = {
      ...(config["engine"] as object ?? {}),
      provider: { type: "slurm", partition: "debug", walltime: "00:10:00" },
      init_blocks: 0,
      max_blocks: 1,
      strategy_period: 1,
    };
    await Deno.writeTextFile(file, stringify(config));
    const ep = await startEndpoint({ service, dir, workers: 1 });
    try {
      const fx = clientOf(service);
      const fnId = await fx.registerFunction(function slurmJob() {
        return Deno.env.get("SLURM_JOB_ID") ?? "none";
      });
      const job = await waitForResult(fx, await fx.run(fnId, ep.endpointId), 90_000);
      assert.match(String(job), /^\d+$/);
    } finally {
      await ep.process.stop();
    }
  } finally {
    await service.process.stop();
    await deleteVhost(access, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
