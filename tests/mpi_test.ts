/**
 * MPI mode against the real thing: Debian's OpenMPI (`mpicc`, `mpiexec`) running a C program
 * compiled here, in blocks of the private one-node Slurm cluster (tests/harness/slurm.ts) started
 * from docs/sites/slurm-mpi.yaml, and in local blocks. As root on 2 cores OpenMPI needs
 * `--allow-run-as-root --oversubscribe` (the sample config has them).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfig } from "../endpoint/config.ts";
import { createEngine, type EngineConfigInput } from "../endpoint/engine/mod.ts";
import type { HighThroughputEngine } from "../endpoint/engine/htex.ts";
import { errorOf, sourceTaskBuffer, valueOf } from "../endpoint/engine/_test_helpers.ts";
import { MPIFunction, type MPIResult } from "../sdk/mpi_function.ts";
import type { ResourceSpecificationWire } from "../sdk/protocol/resource_specification.ts";
import type { ResultMessage } from "../sdk/protocol/mod.ts";
import { sharedSlurm } from "./harness/slurm.ts";
import { Batch, FuncXExecutor } from "../mod.ts";
import { packArgs } from "../sdk/protocol/mod.ts";
import { startEndpoint } from "./harness/stack.ts";
import { waitForResult } from "./harness/wait.ts";
import { serviceEnv } from "./_endpoint_helpers.ts";
import { UserEndpoint, userEndpointCommand } from "../endpoint/user_endpoint.ts";
import { currentDenoDir } from "./harness/site.ts";

const SAMPLE = new URL("../docs/sites/slurm-mpi.yaml", import.meta.url).pathname;
const ROOT_OPTIONS = "--allow-run-as-root --oversubscribe";

/** A C program: prints "rank R of N on HOST"; `fail` names a rank that exits 3; `ms` to sleep. */
const HELLO_C = `
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int rank, size, len;
  char host[MPI_MAX_PROCESSOR_NAME];
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Get_processor_name(host, &len);
  int fail = argc > 1 ? atoi(argv[1]) : -1;
  int ms = argc > 2 ? atoi(argv[2]) : 0;
  if (ms > 0) usleep(ms * 1000);
  if (rank == fail) {
    fprintf(stderr, "rank %d failing on purpose\\n", rank);
    MPI_Finalize();
    return 3;
  }
  printf("rank %d of %d on %s\\n", rank, size, host);
  MPI_Finalize();
  return 0;
}
`;

const work = await Deno.makeTempDir({ prefix: "funcx-mpi-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(work, { recursive: true }));
const hello = join(work, "hello");
await Deno.writeTextFile(`${hello}.c`, HELLO_C);
const cc = await new Deno.Command("mpicc", { args: ["-o", hello, `${hello}.c`] }).output();
assert.equal(cc.code, 0, `mpicc failed: ${new TextDecoder().decode(cc.stderr)}`);

/** Runs an MPI command line on `engine` with a resource specification. */
function runMpi(
  engine: HighThroughputEngine,
  id: string,
  cmd: string,
  spec: ResourceSpecificationWire | null,
  kwargs: Record<string, unknown> = {},
): Promise<ResultMessage> {
  const f = new MPIFunction(cmd);
  const buffer = sourceTaskBuffer(f.functionName, f.source(), [], kwargs);
  return engine.submit(id, buffer, undefined, { resourceSpecification: spec ?? undefined });
}

const spec = (nodes: number, perNode: number, ranks = nodes * perNode) => ({
  num_nodes: nodes,
  ranks_per_node: perNode,
  num_ranks: ranks,
});

/** Asserts that stdout has one line per rank of an `n`-rank world. */
function assertRanks(r: MPIResult, n: number): void {
  const lines = r.stdout.trim().split("\n").sort();
  assert.equal(lines.length, n, r.stdout);
  for (let i = 0; i < n; i++) {
    assert.ok(lines.some((l) => l.startsWith(`rank ${i} of ${n} on `)), `rank ${i}:\n${r.stdout}`);
  }
}

/** [start, end] in ms from a task that printed `date +%s%N` before and after its ranks. */
function span(r: MPIResult): [number, number] {
  const lines = r.stdout.trim().split("\n");
  return [Number(lines[0]) / 1e6, Number(lines.at(-1)) / 1e6];
}

/** The engine of docs/sites/slurm-mpi.yaml, fitted to the one-node test cluster. */
async function sampleEngine(dir: string, mpi: Record<string, unknown> = {}) {
  const config = await loadConfig(SAMPLE);
  const provider = config.engine.provider;
  assert.equal(provider.type, "slurm");
  const engine: EngineConfigInput = {
    ...config.engine,
    nodes_per_block: 1,
    init_blocks: 1,
    min_blocks: 1,
    max_blocks: 1,
    strategy_period: 1,
    run_dir: dir,
    provider: { ...provider as { type: "slurm" }, exclusive: false },
    mpi: { ...config.engine.mpi!, ...mpi },
  };
  return await createEngine(engine, { graceS: 2 });
}

Deno.test("docs/sites/slurm-mpi.yaml loads with the endpoint's config loader", async () => {
  const c = await loadConfig(SAMPLE);
  assert.equal(c.engine.provider.type, "slurm");
  assert.deepEqual(c.engine.mpi, {
    launcher: "mpiexec",
    flavor: "openmpi",
    launcher_options: ROOT_OPTIONS,
    slots_per_node: 4,
  });
  assert.equal(c.engine.nodes_per_block, 2);
});

Deno.test("MPI on Slurm: 2 and 4 ranks, in turn when together they need more than the block, a failing rank named", async () => {
  for (const [k, v] of Object.entries(await sharedSlurm())) Deno.env.set(k, v);
  const dir = await Deno.makeTempDir();
  await using engine = await sampleEngine(dir);

  const two = valueOf(await runMpi(engine, "two", `$FUNCX_MPI_PREFIX ${hello}`, spec(1, 2)));
  assertRanks(two as MPIResult, 2);
  const four = await runMpi(engine, "four", `$FUNCX_MPI_PREFIX ${hello}`, spec(1, 4));
  const r4 = valueOf(four) as MPIResult;
  assertRanks(r4, 4);
  assert.equal(r4.nodes.length, 1);
  assert.match(r4.cmd, /^\$FUNCX_MPI_PREFIX /);
  assert.ok(r4.stdout.includes(`on ${r4.nodes[0]}`), r4.stdout);
  const running = four.task_statuses?.map((t) => t.state) ?? [];
  assert.ok(running.includes("running"), running.join(","));

  // The block has 4 slots: two tasks of 3 ranks run one after the other, never at once.
  const timed = `date +%s%N; $FUNCX_MPI_PREFIX ${hello} -1 {ms}; date +%s%N`;
  const [a, b] = (await Promise.all([
    runMpi(engine, "a", timed, spec(1, 3), { ms: 1500 }),
    runMpi(engine, "b", timed, spec(1, 3), { ms: 1500 }),
  ])).map((r) => valueOf(r) as MPIResult);
  const [[a0, a1], [b0, b1]] = [span(a!), span(b!)];
  assert.ok(a1 >= a0 + 1500 && b1 >= b0 + 1500, `${[a0, a1, b0, b1]}`);
  assert.ok(a1 <= b0 || b1 <= a0, `tasks overlapped: a ${a0}-${a1}, b ${b0}-${b1}`);
  assert.equal((a!.stdout.match(/^rank \d of 3 on /gm) ?? []).length, 3, a!.stdout);

  // A failing rank: its number, its exit code and the end of stderr; the block keeps working.
  const failed = errorOf(
    await runMpi(engine, "fail", `$FUNCX_MPI_PREFIX ${hello} 1`, spec(1, 2)),
  );
  assert.equal(failed.name, "MPIRankFailed");
  assert.equal(failed.code, "MPIRankFailed");
  assert.match(failed.message, /rank 1 exited with code 3; the launcher exited with code 3/);
  assert.match(failed.message, /rank 1 failing on purpose/);

  // Larger than a block (4 slots on 1 node): refused at once, by name, saying what to change.
  const big = errorOf(await runMpi(engine, "big", `$FUNCX_MPI_PREFIX ${hello}`, spec(2, 1)));
  assert.equal(big.name, "MPIResourcesExceeded");
  assert.match(big.message, /asks for 2 node\(s\).*a block has 1 node\(s\).*nodes_per_block/);
  const wide = errorOf(await runMpi(engine, "wide", `$FUNCX_MPI_PREFIX ${hello}`, spec(1, 5)));
  assert.equal(wide.name, "MPIResourcesExceeded");

  // A plain task still runs on the block's workers, and MPI tasks after the errors too.
  assertRanks(
    valueOf(await runMpi(engine, "after", `$FUNCX_MPI_PREFIX ${hello}`, spec(1, 2))) as MPIResult,
    2,
  );
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("MPI on Slurm: the srun launcher inside the block's job", async () => {
  for (const [k, v] of Object.entries(await sharedSlurm())) Deno.env.set(k, v);
  const dir = await Deno.makeTempDir();
  await using engine = await sampleEngine(dir, {
    launcher: "srun",
    launcher_options: "--overcommit --mpi=pmix",
  });
  const r = await runMpi(engine, "srun", `$FUNCX_MPI_PREFIX ${hello}`, spec(1, 2));
  const result = valueOf(r) as MPIResult;
  assertRanks(result, 2);
  await engine.close();
  await Deno.remove(dir, { recursive: true });
});

const localMpi = (over: EngineConfigInput = {}): EngineConfigInput => ({
  max_workers_per_node: 1,
  mpi: { launcher_options: ROOT_OPTIONS, slots_per_node: 2 },
  ...over,
});

Deno.test("MPI on a local block: ranks on this host; a missing launcher is named with the PATH searched", async () => {
  {
    await using engine = await createEngine(localMpi(), { graceS: 2 });
    const r = valueOf(await runMpi(engine, "l2", `$FUNCX_MPI_PREFIX ${hello}`, null)) as MPIResult;
    assertRanks(r, 1);
    const env = valueOf(
      await runMpi(
        engine,
        "env",
        'echo "$FUNCX_MPI_NODES|$FUNCX_MPI_NUM_NODES|$FUNCX_MPI_NUM_RANKS|$FUNCX_MPI_PREFIX"',
        spec(1, 2),
      ),
    ) as MPIResult;
    const host = Deno.hostname();
    assert.equal(
      env.stdout.trim(),
      `${host}|1|2|mpiexec -n 2 --map-by ppr:2:node -H ${host}:2 ${ROOT_OPTIONS}`,
    );
    assert.deepEqual(env.nodes, [host]);
  }
  // A PATH without MPI: only `env`, which worker_init needs to hand its environment on.
  const empty = join(work, "bin-without-mpi");
  await Deno.mkdir(empty, { recursive: true });
  await Deno.symlink("/usr/bin/env", join(empty, "env"));
  await using engine = await createEngine(
    localMpi({ mpi: { launcher: "mpirun" }, worker_init: `export PATH=${empty}` }),
    { graceS: 2 },
  );
  const missing = errorOf(await runMpi(engine, "nolauncher", "$FUNCX_MPI_PREFIX true", null));
  assert.equal(missing.name, "MPILauncherNotFound");
  assert.match(missing.message, new RegExp(`"mpirun" not found on the PATH .*\\(${empty}\\)`));
  assert.match(missing.message, /engine\.worker_init/);
  // The endpoint keeps running: a plain function still works on it.
  const plain = sourceTaskBuffer("f", "function f() { return 42; }");
  assert.equal(valueOf(await engine.submit("plain", plain)), 42);
});

Deno.test("MPI: an MPIFunction sent to an endpoint without MPI mode fails by name, and it runs on", async () => {
  await using engine = await createEngine({ max_workers_per_node: 1 }, { graceS: 2 });
  const e = errorOf(await runMpi(engine, "nompi", "$FUNCX_MPI_PREFIX true", spec(1, 1)));
  assert.equal(e.name, "MPIModeRequired");
  assert.match(e.message, /no MPI mode: set engine\.mpi in its config\.yaml/);
  const plain = sourceTaskBuffer("f", "function f() { return 1; }");
  assert.equal(valueOf(await engine.submit("plain", plain)), 1);
});

Deno.test("MPI through the system: the executor's resourceSpecification, client.run and Batch, stored by the service", async () => {
  await using s = await serviceEnv();
  const ep = await startEndpoint({
    service: s.service,
    dir: s.dir,
    name: "mpi",
    workers: 1,
    config: { engine: { mpi: { launcher_options: ROOT_OPTIONS, slots_per_node: 4 } } },
  });
  try {
    const endpointId = ep.endpointId;
    const id = await s.client.registerShellFunction(new MPIFunction(`$FUNCX_MPI_PREFIX ${hello}`));
    await using fx = new FuncXExecutor({
      endpointId,
      client: s.client,
      resourceSpecification: { numRanks: 2 },
    });
    const f2 = fx.submitToRegisteredFunction(id);
    fx.resourceSpecification = { ranksPerNode: 4 }; // for the next submit only
    const f4 = fx.submitToRegisteredFunction(id);
    assert.deepEqual(fx.resourceSpecification, { numNodes: 1, ranksPerNode: 4, numRanks: 4 });
    assertRanks(await f2 as MPIResult, 2);
    assertRanks(await f4 as MPIResult, 4);
    const info = await s.client.getTask(f4.taskId!);
    assert.deepEqual(info.resource_specification, spec(1, 4));
    assert.throws(() => (fx.resourceSpecification = { numRanks: 3, ranksPerNode: 1 }), RangeError);

    const runId = await s.client.run(id, endpointId, { resourceSpecification: { numRanks: 3 } });
    assertRanks(await waitForResult(s.client, runId) as MPIResult, 3);
    const batch = new Batch();
    batch.add(id, endpointId, [], {}, { resourceSpecification: { numRanks: 1 } });
    batch.add(id, endpointId);
    const [one, unspecified] = await s.client.batchRun(batch);
    assertRanks(await waitForResult(s.client, one!) as MPIResult, 1);
    assertRanks(await waitForResult(s.client, unspecified!) as MPIResult, 1); // the default
    assert.deepEqual((await s.client.getTask(one!)).resource_specification, spec(1, 1));
    assert.equal((await s.client.getTask(unspecified!)).resource_specification, undefined);

    // The service refuses a bad specification by field, before anything runs.
    const refused = await s.client.submit([[id, endpointId, packArgs([]), {
      resource_specification: { num_nodes: 1, ranks_per_node: 1, num_ranks: 2 },
    }]]);
    const r = refused.results[0]!;
    assert.ok(r.status !== "Success" && r.code === "bad_request", JSON.stringify(r));
    assert.match(r.reason, /tasks\.0\.3\.resource_specification.*num_ranks \(2\) is more than/);
  } finally {
    await ep.process.stop();
  }
});

Deno.test("MPI through a user endpoint: the resource specification reaches its engine", async () => {
  // The multi-user path: the site endpoint hands the task to a user endpoint process over its
  // frames; here that process runs as this very account, so no account switch is needed.
  const logDir = await Deno.makeTempDir({ prefix: "funcx-mpi-ue-" });
  const gone: string[] = [];
  const ue = new UserEndpoint(
    "mpi-ue",
    { name: "self", uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0, home: logDir, shell: "/bin/sh" },
    {},
    localMpi() as Record<string, unknown>,
    {
      command: userEndpointCommand(null),
      env: { DENO_DIR: await currentDenoDir() },
      logFile: join(logDir, "ue.log"),
      timeoutS: 60,
      retries: 0,
    },
    (_ue, why) => gone.push(why),
  );
  try {
    await ue.ready;
    const f = new MPIFunction('echo "$FUNCX_MPI_NUM_NODES|$FUNCX_MPI_NUM_RANKS"');
    const buffer = sourceTaskBuffer(f.functionName, f.source(), [], {});
    const r = valueOf(await ue.submit("ue-env", buffer, undefined, spec(1, 2))) as MPIResult;
    assert.equal(r.stdout.trim(), "1|2");
    assert.deepEqual(r.nodes, [Deno.hostname()]);
  } finally {
    await ue.stop(5);
    await Deno.remove(logDir, { recursive: true });
  }
  assert.deepEqual(gone.filter((w) => !/stop|exit/i.test(w)), []);
});
