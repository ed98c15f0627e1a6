/**
 * The engine with the Grid Engine provider against a real one-node Grid Engine cell
 * (tests/harness/gridengine.ts): the batch-provider contract (tasks in jobs, scaling out and in,
 * a block deleted with `qdel` replaced and its task retried, a bad queue a clear error, a whole
 * endpoint), plus what is Grid Engine's own: the job script, `qstat`/`qacct` states, the
 * `qrsh -inherit` launcher in a parallel environment, a walltime (`h_rt`) ending a block, and the
 * sample site config `docs/sites/gridengine.yaml` driving a whole endpoint.
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
import { taskBuffer, valueOf } from "../endpoint/engine/_test_helpers.ts";
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
import { sharedGridEngine } from "./harness/gridengine.ts";

const SITE_CONFIG = new URL("../docs/sites/gridengine.yaml", import.meta.url).pathname;

// qsub, qstat, qacct and qdel (run by the provider in this process) find the cell through it.
const run = schedulerClient(await sharedGridEngine());

const gridEngine: Scheduler = {
  jobIdEnv: "JOB_ID",
  scriptSuffix: "qsub",
  runningJobs: async () => new Set(parseQstatXml(await run("qstat", ["-xml"])).keys()),
  kill: async (jobId) => void await run("qdel", [jobId]),
};

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
  assertScriptLines(s, [
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
  ]);
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

Deno.test("GridEngineProvider: tasks run inside a real Grid Engine job, in the queue and project asked for", async () => {
  const provider = {
    type: "gridengine" as const,
    queue: "all.q",
    project: "funcx",
    walltime: "00:10:00",
  };
  await tasksRunInAJob(provider, gridEngine, async (jobId) => {
    const detail = await run("qstat", ["-j", jobId]);
    assert.match(detail, /^project:\s+funcx$/m);
    assert.match(detail, /hard_queue_list:\s+all\.q/);
    assert.match(detail, /h_rt=600/);
  });
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
  await blocksScaleOutAndIn({ type: "gridengine" }, gridEngine);
});

Deno.test("GridEngineProvider: a block deleted with qdel is replaced and its task retried", async () => {
  await killedBlockIsReplaced({ type: "gridengine" }, gridEngine);
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
  await badOptionIsAClearError({ type: "gridengine", queue: "no-such-queue" }, [
    /unknown queue "no-such-queue"/,
    /qsub/,
  ]);
  // The provider says the same of a bad project, as a permanent error (not retried).
  const dir = await Deno.makeTempDir();
  const p = new GridEngineProvider({ runDir: dir, project: "no-such-project" });
  const err = await p.start("x", ["true"], {}).catch((e) => e);
  assert.ok(err instanceof SchedulerCommandError && err.permanent, String(err));
  assert.match(err.message, /project "no-such-project" does not exist/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GridEngineProvider: the sample site config runs a whole endpoint's SDK tasks in Grid Engine jobs", async () => {
  const site = await loadConfig(SITE_CONFIG);
  assert.equal(site.engine.provider.type, "gridengine");
  // The site's engine section as written, polled faster for the test.
  const raw = parse(await Deno.readTextFile(SITE_CONFIG)) as { engine: Record<string, unknown> };
  await endpointRunsTasksInJobs({ ...raw.engine, strategy_period: 1 }, gridEngine);
});
