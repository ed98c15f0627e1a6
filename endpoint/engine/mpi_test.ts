import assert from "node:assert/strict";
import { resolveResourceSpecification } from "../../sdk/protocol/resource_specification.ts";
import { MPIFunction, toResourceSpecificationWire } from "../../sdk/mpi_function.ts";
import { EngineConfigSchema } from "./engine_config.ts";
import { type MpiConfig, mpiEnv, mpiPrefix } from "./mpi_launcher.ts";
import { parsePeHostfile, SlotAllocator } from "./mpi_nodes.ts";
import { isMpiTask, mpiSpecOf, rankFailure } from "./mpi_runner.ts";
import { sourceTaskBuffer } from "./_test_helpers.ts";

const mpi = (over: Partial<MpiConfig> = {}): MpiConfig => ({
  launcher: "mpiexec",
  flavor: "openmpi",
  launcher_options: "",
  slots_per_node: null,
  ...over,
});
const two = { hosts: ["n1", "n2"], ranksPerNode: 2, numRanks: 3 };

Deno.test("mpiPrefix: OpenMPI mpiexec and mpirun map ppr:P:node on -H host:P", () => {
  assert.equal(mpiPrefix(mpi(), two), "mpiexec -n 3 --map-by ppr:2:node -H n1:2,n2:2");
  assert.equal(
    mpiPrefix(mpi({ launcher: "mpirun", launcher_options: " --allow-run-as-root " }), two),
    "mpirun -n 3 --map-by ppr:2:node -H n1:2,n2:2 --allow-run-as-root",
  );
});

Deno.test("mpiPrefix: MPICH takes -ppn and -hosts; srun -N -n --ntasks-per-node -w", () => {
  assert.equal(mpiPrefix(mpi({ flavor: "mpich" }), two), "mpiexec -n 3 -ppn 2 -hosts n1,n2");
  assert.equal(
    mpiPrefix(mpi({ flavor: "mpich", launcher: "mpirun" }), two),
    "mpirun -n 3 -ppn 2 -hosts n1,n2",
  );
  assert.equal(
    mpiPrefix(mpi({ launcher: "srun", flavor: "mpich", launcher_options: "--mpi=pmix" }), two),
    "srun -N 2 -n 3 --ntasks-per-node=2 -w n1,n2 --mpi=pmix",
  );
  // A host name the shell would split is quoted.
  assert.equal(
    mpiPrefix(mpi({ flavor: "mpich" }), { hosts: ["a b"], ranksPerNode: 1, numRanks: 1 }),
    "mpiexec -n 1 -ppn 1 -hosts 'a b'",
  );
});

Deno.test("mpiEnv: the prefix, the nodes and the counts", () => {
  assert.deepEqual(mpiEnv(mpi({ launcher: "srun" }), two), {
    FUNCX_MPI_PREFIX: "srun -N 2 -n 3 --ntasks-per-node=2 -w n1,n2",
    FUNCX_MPI_NODES: "n1,n2",
    FUNCX_MPI_NUM_NODES: "2",
    FUNCX_MPI_NUM_RANKS: "3",
    FUNCX_MPI_RANKS_PER_NODE: "2",
  });
});

Deno.test("resolveResourceSpecification: defaults, and errors naming the field", () => {
  const spec = resolveResourceSpecification;
  assert.deepEqual(spec({}), { num_nodes: 1, ranks_per_node: 1, num_ranks: 1 });
  assert.deepEqual(spec({ num_nodes: 2 }), { num_nodes: 2, ranks_per_node: 1, num_ranks: 2 });
  assert.deepEqual(spec({ num_ranks: 5, num_nodes: 2 }), {
    num_nodes: 2,
    ranks_per_node: 3,
    num_ranks: 5,
  });
  assert.deepEqual(spec({ num_nodes: 2, ranks_per_node: 4 }), {
    num_nodes: 2,
    ranks_per_node: 4,
    num_ranks: 8,
  });
  assert.throws(() => spec({ num_ranks: 2.5 }), /num_ranks must be a positive integer/);
  assert.throws(() => spec({ num_nodes: -1 }), /num_nodes must be a positive integer/);
  assert.throws(() => spec({ nodes: 1 }), /unknown field "nodes"/);
  assert.throws(() => spec("4"), TypeError);
  assert.throws(
    () => spec({ num_nodes: 1, ranks_per_node: 2, num_ranks: 3 }),
    /num_ranks \(3\) is more than num_nodes × ranks_per_node \(1 × 2\)/,
  );
  assert.throws(() => spec({ num_nodes: 3, num_ranks: 2, ranks_per_node: 1 }), RangeError);
  // The SDK's names in the SDK's errors.
  assert.throws(
    () => toResourceSpecificationWire({ numRanks: 0 }),
    /numRanks must be a positive integer/,
  );
  assert.deepEqual(toResourceSpecificationWire({ numNodes: 2, numRanks: 4 }), {
    num_nodes: 2,
    ranks_per_node: 2,
    num_ranks: 4,
  });
});

Deno.test("SlotAllocator: shares nodes and slots, queues what does not fit, never oversubscribes", () => {
  const a = new SlotAllocator([{ host: "n1", slots: 4 }, { host: "n2", slots: 4 }]);
  const spec = (n: number, p: number) =>
    resolveResourceSpecification({ num_nodes: n, ranks_per_node: p });
  const x = a.allocate(spec(2, 2))!;
  assert.deepEqual(x.hosts, ["n1", "n2"]);
  const y = a.allocate(spec(1, 2))!;
  assert.deepEqual(y.hosts, ["n1"]);
  assert.deepEqual(a.free, [0, 2]);
  assert.equal(a.allocate(spec(2, 1)), undefined, "n1 is full");
  const z = a.allocate(spec(1, 2))!;
  assert.deepEqual(z.hosts, ["n2"]);
  assert.equal(a.allocate(spec(1, 1)), undefined, "the block is full");
  a.release(x);
  assert.deepEqual(a.free, [2, 2]);
  assert.deepEqual(a.allocate(spec(2, 2))?.hosts, ["n1", "n2"]);
  a.release(y);
  a.release(z);
  assert.deepEqual(a.free, [2, 2]);
  assert.equal(a.tooLarge(spec(2, 4)), undefined);
  assert.match(a.tooLarge(spec(3, 1)) ?? "", /3 node\(s\).*2 node\(s\) with at most 4 slot/);
  assert.match(a.tooLarge(spec(1, 5)) ?? "", /5 rank\(s\) each/);
  assert.throws(() => new SlotAllocator([]), RangeError);
});

Deno.test("parsePeHostfile: hosts and slots, slots_per_node wins, a bad line is named", () => {
  const text = "n1 4 all.q@n1 UNDEFINED\n\nn2 2 all.q@n2 UNDEFINED\n";
  assert.deepEqual(parsePeHostfile(text, 1), [{ host: "n1", slots: 1 }, { host: "n2", slots: 1 }]);
  assert.throws(() => parsePeHostfile("n1 x", null), /PE_HOSTFILE line "n1 x"/);
});

Deno.test("isMpiTask and mpiSpecOf: an MPIFunction's buffer and spec, read as data", () => {
  const f = new MPIFunction("$FUNCX_MPI_PREFIX ./a {n}", { snippet_lines: 5 });
  const buffer = sourceTaskBuffer(f.functionName, f.source(), [], { n: 1 });
  assert.equal(isMpiTask(buffer), true);
  assert.equal(isMpiTask(sourceTaskBuffer("__funcx_shell__", "function x() {}")), false);
  assert.equal(isMpiTask(sourceTaskBuffer("f", "function f() {}")), false);
  assert.deepEqual(mpiSpecOf(f.source()), {
    cmd: "$FUNCX_MPI_PREFIX ./a {n}",
    fail_on_nonzero: true,
    snippet_lines: 5,
  });
  assert.throws(
    () => mpiSpecOf("function __funcx_mpi__() { return Deno.exit(1); }"),
    /registerShellFunction\(new MPIFunction/,
  );
});

Deno.test("rankFailure: names the rank, the exit code and the end of stderr", () => {
  const stderr = "rank 1 failing on purpose\n" +
    "mpiexec detected that one or more processes exited with non-zero status\n" +
    "  Process name: [[8468,1],1]\n  Exit code:    3\n";
  const msg = rankFailure("mpiexec -n 2 ./hello 1", 3, stderr, ["vm"]);
  assert.match(msg, /rank 1 exited with code 3; the launcher exited with code 3/);
  assert.match(msg, /rank 1 failing on purpose/);
  assert.match(
    rankFailure("srun ./x", 2, "", ["a", "b"]),
    /on a,b: the launcher exited with code 2.*\n\(empty\)/,
  );
});

Deno.test("EngineConfigSchema: engine.mpi is validated, with errors naming the field", () => {
  const ok = EngineConfigSchema.parse({ mpi: { launcher: "mpirun", slots_per_node: 4 } });
  assert.deepEqual(ok.mpi, {
    launcher: "mpirun",
    flavor: "openmpi",
    launcher_options: "",
    slots_per_node: 4,
  });
  assert.equal(EngineConfigSchema.parse({}).mpi, null);
  const bad = (mpi: unknown, extra: Record<string, unknown> = {}) => {
    const r = EngineConfigSchema.safeParse({ mpi, ...extra });
    assert.ok(!r.success);
    return r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n");
  };
  assert.match(bad({ launcher: "aprun" }), /^mpi\.launcher: /);
  assert.match(bad({ flavor: "intel" }), /^mpi\.flavor: /);
  assert.match(bad({ slots_per_node: 0 }), /^mpi\.slots_per_node: /);
  assert.match(bad({ hosts: "x" }), /^mpi: .*hosts/);
  assert.match(
    bad({}, { provider: { type: "slurm", launcher: "srun" }, nodes_per_block: 2 }),
    /^provider\.launcher: in MPI mode one manager runs per block/,
  );
});
