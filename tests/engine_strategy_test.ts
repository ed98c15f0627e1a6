/** The SimpleStrategy's scaling rules and the engine config's block fields. */
import assert from "node:assert/strict";
import { EngineConfigSchema, SimpleStrategy, slurmState } from "../endpoint/engine/mod.ts";

const base = { min_blocks: 0, max_blocks: 4, nodes_per_block: 1, parallelism: 1, max_idletime: 60 };

Deno.test("SimpleStrategy scales out for waiting tasks, capped by max_blocks", () => {
  const s = new SimpleStrategy(base);
  const at = (activeTasks: number, activeBlocks: number, tasksPerNode = 2) =>
    s.decide({ activeTasks, activeBlocks, tasksPerNode, now: 0 });
  assert.deepEqual(at(1, 0), { action: "scale_out", blocks: 1 });
  assert.deepEqual(at(5, 0), { action: "scale_out", blocks: 3 });
  assert.deepEqual(at(100, 1), { action: "scale_out", blocks: 3 });
  assert.deepEqual(at(100, 4), { action: "none" });
  assert.deepEqual(at(4, 2), { action: "none" });
});

Deno.test("SimpleStrategy honours parallelism and nodes_per_block", () => {
  const half = new SimpleStrategy({ ...base, parallelism: 0.5, nodes_per_block: 2 });
  assert.deepEqual(half.decide({ activeTasks: 16, activeBlocks: 1, tasksPerNode: 2, now: 0 }), {
    action: "scale_out",
    blocks: 1,
  });
  const none = new SimpleStrategy({ ...base, parallelism: 0 });
  assert.deepEqual(none.decide({ activeTasks: 50, activeBlocks: 1, tasksPerNode: 1, now: 0 }), {
    action: "none",
  });
  assert.deepEqual(none.decide({ activeTasks: 50, activeBlocks: 0, tasksPerNode: 1, now: 0 }), {
    action: "scale_out",
    blocks: 1,
  });
});

Deno.test("SimpleStrategy scales in to min_blocks only after max_idletime", () => {
  const s = new SimpleStrategy({ ...base, min_blocks: 1, max_idletime: 10 });
  const idle = (now: number, activeBlocks = 3) =>
    s.decide({ activeTasks: 0, activeBlocks, tasksPerNode: 1, now });
  assert.deepEqual(idle(0), { action: "none" });
  assert.deepEqual(idle(9_000), { action: "none" });
  assert.deepEqual(idle(10_000), { action: "scale_in", blocks: 2 });
  // Work in between restarts the idle timer.
  assert.deepEqual(idle(20_000), { action: "none" });
  s.decide({ activeTasks: 1, activeBlocks: 3, tasksPerNode: 1, now: 25_000 });
  assert.deepEqual(idle(29_000), { action: "none" });
  assert.deepEqual(idle(39_000), { action: "scale_in", blocks: 2 });
  assert.deepEqual(idle(50_000, 1), { action: "none" });
  assert.deepEqual(idle(50_000, 0), { action: "scale_out", blocks: 1 });
});

Deno.test("EngineConfigSchema: managers is init = min = max; batch providers idle down to 0", () => {
  const old = EngineConfigSchema.parse({ managers: 3 });
  assert.deepEqual([old.init_blocks, old.min_blocks, old.max_blocks, old.managers], [3, 3, 3, 3]);
  const local = EngineConfigSchema.parse({});
  assert.deepEqual([local.init_blocks, local.min_blocks, local.max_blocks], [1, 1, 1]);
  assert.equal(local.provider.type, "local");
  const slurm = EngineConfigSchema.parse({ provider: { type: "slurm" }, max_blocks: 4 });
  assert.deepEqual([slurm.init_blocks, slurm.min_blocks, slurm.max_blocks], [1, 0, 4]);
  assert.ok(slurm.provider.type === "slurm" && slurm.provider.partition === null);
  const lines = EngineConfigSchema.parse({
    provider: { type: "slurm", scheduler_options: "--mem=1G\n--gres=gpu:1\n", worker_init: "a" },
  });
  assert.ok(lines.provider.type === "slurm");
  assert.deepEqual(lines.provider.scheduler_options, ["--mem=1G", "--gres=gpu:1"]);
  assert.deepEqual(lines.provider.worker_init, ["a"]);
  const bad = EngineConfigSchema.safeParse({ init_blocks: 3, max_blocks: 2 });
  assert.equal(bad.success, false);
  assert.match(JSON.stringify(bad.error?.issues), /max_blocks/);
  const typo = EngineConfigSchema.safeParse({ provider: { type: "slurm", partiton: "x" } });
  assert.match(JSON.stringify(typo.error?.issues), /partiton/);
  const walltime = EngineConfigSchema.safeParse({ provider: { type: "slurm", walltime: "1h" } });
  assert.equal(walltime.success, false);
});

Deno.test("slurmState maps Slurm job states to block states", () => {
  assert.deepEqual(slurmState("PENDING", "Resources"), { state: "pending", message: "Resources" });
  assert.deepEqual(slurmState("RUNNING", "None"), { state: "running" });
  assert.equal(slurmState("CANCELLED+").state, "cancelled");
  assert.equal(slurmState("TIMEOUT").state, "timeout");
  assert.equal(slurmState("NODE_FAIL").state, "failed");
  assert.equal(slurmState("WHATEVER").state, "unknown");
});

Deno.test("EngineConfigSchema: a parsed config parses again to itself", () => {
  for (
    const input of [{}, { managers: 2 }, { provider: { type: "slurm" as const }, init_blocks: 0 }]
  ) {
    const once = EngineConfigSchema.parse(input);
    assert.deepEqual(EngineConfigSchema.parse(once), once);
  }
  assert.equal(EngineConfigSchema.safeParse({ managers: 0 }).success, false);
});
