/**
 * The engine with the Grid Engine provider against a real one-node Grid Engine cell
 * (tests/harness/gridengine.ts): tasks run in batch jobs (also through `qrsh -inherit` in a
 * parallel environment), blocks scale from zero to two and back, a block deleted with `qdel` is
 * replaced and its task retried, a walltime ends a block, a bad queue is a clear error in the
 * engine's status, and the sample site config `docs/sites/gridengine.yaml` runs a whole endpoint.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { loadConfig } from "../endpoint/config.ts";
import {
  createEngine,
  EngineConfigSchema,
  GridEngineProvider,
  gridEngineState,
  parseQstatXml,
  qacctState,
  SchedulerCommandError,
  TERMINAL_STATES,
} from "../endpoint/engine/mod.ts";
import { taskBuffer, until, valueOf } from "../endpoint/engine/_test_helpers.ts";
import { sharedGridEngine } from "./harness/gridengine.ts";
import {
  clientOf,
  createVhost,
  deleteVhost,
  sharedBroker,
  startEndpoint,
  startService,
} from "./harness/stack.ts";
import { waitForResult } from "./harness/wait.ts";

const SITE_CONFIG = new URL("../docs/sites/gridengine.yaml", import.meta.url).pathname;

const sge = await sharedGridEngine();
// qsub, qstat, qacct and qdel (run by the provider in this process) find the cell through it.
for (const [k, v] of Object.entries(sge)) Deno.env.set(k, v);

const jobOf = () => ({ job: Deno.env.get("JOB_ID") ?? null, pid: Deno.pid });

async function qstat(): Promise<string> {
  const out = await new Deno.Command("qstat", { args: ["-xml"], env: sge }).output();
  return new TextDecoder().decode(out.stdout);
}

Deno.test("GridEngineProvider: the job script carries options, the qrsh launcher and the env", async () => {
  const dir = await Deno.makeTempDir();
  const p = new GridEngineProvider({
    runDir: dir,
    queue: "all.q",
    project: "physics",
    walltime: "00:10:00",
    nodesPerBlock: 2,
    parallelEnvironment: "mpi-1",
    schedulerOptions: ["-l mem_free=1G", "#$ -m n"],
    workerInit: ["module load deno"],
  });
  const s = p.script("7", ["deno", "run", "a b.ts"], { FUNCX_MANAGER_SECRET: "it's" });
  for (
    const line of [
      "#$ -q all.q",
      "#$ -P physics",
      "#$ -l h_rt=00:10:00",
      "#$ -pe mpi-1 2",
      "#$ -l mem_free=1G",
      "#$ -m n",
      "#$ -S /bin/bash",
      `#$ -o ${join(dir, "block_7.log")}`,
      "module load deno",
      `export FUNCX_MANAGER_SECRET='it'\\''s'`,
    ]
  ) assert.ok(s.split("\n").includes(line), `missing ${line} in\n${s}`);
  // Quoted twice: qrsh -inherit joins the words and a shell on the host splits them again.
  assert.match(s, /qrsh -inherit -V "\$host" deno run ''\\''a b\.ts'\\''' &/);
  assert.match(s, /done < "\$PE_HOSTFILE"/);
  assert.throws(
    () => new GridEngineProvider({ runDir: dir, nodesPerBlock: 2 }),
    /parallel_environment/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: qstat -xml, state letters and qacct records map to block states", () => {
  const xml = `<?xml version='1.0'?><job_info><queue_info>
    <job_list state="running"><JB_job_number>12</JB_job_number><state>r</state></job_list>
    </queue_info><job_info>
    <job_list state="pending"><JB_job_number>13</JB_job_number><state>qw</state></job_list>
    <job_list state="pending"><JB_job_number>14</JB_job_number><state>Eqw</state></job_list>
    </job_info></job_info>`;
  assert.deepEqual(
    [...parseQstatXml(xml)],
    [["12", "r"], ["13", "qw"], ["14", "Eqw"]],
  );
  assert.equal(gridEngineState("r").state, "running");
  assert.equal(gridEngineState("t").state, "running");
  assert.equal(gridEngineState("qw").state, "pending");
  assert.equal(gridEngineState("hqw").state, "pending");
  assert.equal(gridEngineState("Eqw").state, "failed");
  const acct = (failed: string, exit: number) =>
    qacctState(`jobnumber    9\nfailed       ${failed}\nexit_status  ${exit}\n`)?.state;
  assert.equal(acct("0", 0), "completed");
  assert.equal(acct("0", 3), "failed");
  assert.equal(acct("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", 137), "timeout");
  assert.equal(acct("100 : assumedly after job", 137), "cancelled");
  assert.equal(qacctState("error: job id 9 not found"), undefined);
});

Deno.test("GridEngineProvider: a multi-node block without a parallel environment is refused in the config", () => {
  const r = EngineConfigSchema.safeParse({ provider: { type: "gridengine" }, nodes_per_block: 2 });
  assert.equal(r.success, false);
  const issue = r.error!.issues[0]!;
  assert.deepEqual(issue.path, ["provider", "parallel_environment"]);
  assert.match(issue.message, /parallel environment/);
  assert.ok(EngineConfigSchema.safeParse({ provider: { type: "gridengine" } }).success);
});

Deno.test("GridEngineProvider: tasks run inside a real Grid Engine job", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "gridengine", queue: "all.q", project: "funcx", walltime: "00:10:00" },
    init_blocks: 1,
    max_workers_per_node: 1,
    strategy_period: 1,
    run_dir: dir,
  }, { graceS: 2 });
  const r = valueOf(await engine.submit("t1", taskBuffer(jobOf))) as { job: string | null };
  const block = engine.blocks[0]!;
  assert.match(String(r.job), /^\d+$/);
  assert.equal(r.job, block.jobId);
  const script = await Deno.stat(join(dir, "block_1.qsub"));
  assert.equal(script.mode! & 0o777, 0o700);
  assert.match(await Deno.readTextFile(join(dir, "block_1.log")), /funcX block 1: job \d+/);
  await until(() => engine.status().blocks?.running === 1, "the block to be seen running");
  // The job was submitted to the queue and project asked for.
  const out = await new Deno.Command("qstat", { args: ["-j", r.job!], env: sge }).output();
  const detail = new TextDecoder().decode(out.stdout);
  assert.match(detail, /^project:\s+funcx$/m);
  assert.match(detail, /hard_queue_list:\s+all\.q/);
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: the qrsh launcher starts the manager with qrsh -inherit in a parallel environment", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "gridengine", parallel_environment: "funcx", launcher: "qrsh" },
    init_blocks: 1,
    max_workers_per_node: 1,
    strategy_period: 1,
    run_dir: dir,
  }, { graceS: 2 });
  const where = () => ({
    job: Deno.env.get("JOB_ID"),
    pe: Deno.env.get("PE"),
    suffix: Deno.env.get("FUNCX_MANAGER_ID_SUFFIX"),
  });
  const r = valueOf(await engine.submit("q1", taskBuffer(where))) as Record<string, string>;
  assert.equal(r["job"], engine.blocks[0]!.jobId);
  assert.equal(r["pe"], "funcx");
  assert.equal(r["suffix"], ".0", "started by the qrsh loop over $PE_HOSTFILE");
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: blocks scale from zero to two under load and back to min_blocks", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "gridengine" },
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
    return Deno.env.get("JOB_ID");
  };
  const results = await Promise.all(
    Array.from({ length: 6 }, (_, i) => engine.submit(`s${i}`, taskBuffer(slow))),
  );
  const jobs = new Set(results.map(valueOf) as string[]);
  assert.equal(most, 2, "two blocks under load");
  assert.ok(jobs.size >= 1 && jobs.size <= 2, `jobs ${[...jobs]}`);
  await until(() => engine.blocks.length === 0, "scale in to min_blocks (0)", 60_000);
  clearInterval(watch);
  await until(() => engine.status().blocks?.completed === 2, "two blocks counted completed");
  // A stopped block leaves the engine once qdel is sent; Grid Engine ends its job a moment
  // later, so poll, with a bound.
  let left = parseQstatXml(await qstat());
  for (let i = 0; i < 300 && [...jobs].some((id) => left.has(id)); i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = parseQstatXml(await qstat());
  }
  for (const id of jobs) assert.ok(!left.has(id), `job ${id} still listed: ${[...left]}`);
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: a block deleted with qdel is replaced and its task retried", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "gridengine" },
    init_blocks: 1,
    min_blocks: 1,
    max_blocks: 1,
    max_workers_per_node: 1,
    max_retries_on_manager_lost: 1,
    strategy_period: 1,
    run_dir: join(dir, "run"),
  }, { graceS: 2 });
  const marked = async (d: string) => {
    const job = Deno.env.get("JOB_ID")!;
    await Deno.writeTextFile(`${d}/started-${job}`, "");
    // The first run waits for qdel; the retry finishes at once.
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
  const qdel = await new Deno.Command("qdel", { args: [first], env: sge }).output();
  assert.equal(qdel.code, 0, new TextDecoder().decode(qdel.stderr));
  const second = valueOf(await result) as string;
  assert.notEqual(second, first);
  assert.match(second, /^\d+$/);
  assert.ok((engine.status().blocks?.failed ?? 0) >= 1, JSON.stringify(engine.status()));
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: a block's walltime (h_rt) ends its job, seen as timeout", async () => {
  const dir = await Deno.makeTempDir();
  const p = new GridEngineProvider({ runDir: dir, walltime: "2" });
  const block = await p.start("w1", ["sleep", "300"], {});
  let state = "pending";
  const deadline = Date.now() + 60_000;
  while (!TERMINAL_STATES.has(state as never) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    state = (await p.status([block]))[0]!.state;
  }
  assert.equal(state, "timeout");
  assert.match(await block.ended, /timeout/);
  await p.stop(block); // a no-op for an ended block
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: a bad queue is a clear error in the status; the engine keeps running", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    provider: { type: "gridengine", queue: "no-such-queue" },
    init_blocks: 1,
    strategy_period: 1,
    run_dir: dir,
  }, { graceS: 2 });
  assert.equal(engine.state, "running");
  assert.match(String(engine.status().provider_error), /unknown queue "no-such-queue"/);
  assert.match(String(engine.status().provider_error), /qsub/);
  // Tasks still queue (they would run once the config is fixed); nothing crashed.
  const pending = engine.submit("p1", taskBuffer(() => 1));
  await until(() => engine.status().pending_tasks === 1, "the task to queue");
  assert.equal(engine.blocks.length, 0);
  // The provider says the same, as a permanent SchedulerCommandError (not retried).
  const p = new GridEngineProvider({ runDir: dir, project: "no-such-project" });
  const err = await p.start("x", ["true"], {}).catch((e) => e);
  assert.ok(err instanceof SchedulerCommandError && err.permanent, String(err));
  assert.match(err.message, /project "no-such-project" does not exist/);
  await engine.close();
  await pending.catch(() => {});
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: the sample site config runs a whole endpoint's SDK tasks in Grid Engine jobs", async () => {
  const site = await loadConfig(SITE_CONFIG);
  assert.equal(site.engine.provider.type, "gridengine");
  const raw = parse(await Deno.readTextFile(SITE_CONFIG)) as { engine: Record<string, unknown> };
  const access = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-sge-ep-" });
  const vhost = `funcx-${crypto.randomUUID().slice(0, 8)}`;
  const service = await startService({
    dir,
    amqpUrl: await createVhost(access, vhost),
    broker: access,
  });
  try {
    // The site's engine section as written, polled faster for the test.
    const engine = { ...raw.engine, strategy_period: 1 };
    const ep = await startEndpoint({ service, dir, workers: 1, config: { engine } });
    try {
      const fx = clientOf(service);
      const fnId = await fx.registerFunction(function gridEngineJob() {
        return Deno.env.get("JOB_ID") ?? "none";
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
