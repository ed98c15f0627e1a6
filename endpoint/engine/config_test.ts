import assert from "node:assert/strict";
import { EngineConfigSchema } from "./mod.ts";
import { permissionFlags } from "./command.ts";
import { workerCount, workerPlan } from "./manager.ts";
import { fillPlaceholders } from "./shell.ts";

Deno.test("EngineConfigSchema fills every default", () => {
  const c = EngineConfigSchema.parse({});
  assert.equal(c.managers, 1);
  assert.equal(c.heartbeat_threshold, 120);
  assert.equal(c.max_retries_on_manager_lost, 0);
  assert.equal(c.task_walltime_s, null);
  assert.deepEqual(c.permissions, { all: true, read: [], write: [], net: [], env: [], run: [] });
  assert.deepEqual(c.available_accelerators, []);
});

Deno.test("EngineConfigSchema refuses typos and names the bad field", () => {
  const r = EngineConfigSchema.safeParse({ max_worker_per_node: 2 });
  assert.equal(r.success, false);
  assert.match(JSON.stringify(r.error?.issues), /max_worker_per_node/);
  const p = EngineConfigSchema.safeParse({ permissions: { reed: ["/tmp"] } });
  assert.equal(p.success, false);
});

Deno.test("EngineConfigSchema expands an accelerator count", () => {
  assert.deepEqual(EngineConfigSchema.parse({ available_accelerators: 3 }).available_accelerators, [
    "0",
    "1",
    "2",
  ]);
});

Deno.test("workerCount takes the tightest of count, cores, memory and accelerators", () => {
  const base = {
    ...EngineConfigSchema.parse({ max_workers_per_node: 8 }),
    interchange_host: "",
    interchange_port: 0,
    manager_id: "m",
    block_id: "1",
    run_dir: "/tmp",
    worker_command: null,
  };
  assert.equal(workerCount(base, 4, 64 * 1024 ** 3), 4);
  assert.equal(workerCount({ ...base, cores_per_worker: 0.5 }, 4, 64 * 1024 ** 3), 8);
  assert.equal(workerCount({ ...base, mem_per_worker: 2 }, 4, 5 * 1024 ** 3), 2);
  assert.equal(workerCount({ ...base, available_accelerators: ["a"] }, 4, 64 * 1024 ** 3), 1);
  assert.throws(() => workerCount({ ...base, mem_per_worker: 8 }, 4, 1024 ** 3), /Cannot start/);
});

Deno.test("permissionFlags never lets a worker prompt", () => {
  assert.deepEqual(permissionFlags({}), ["--no-prompt", "--allow-all"]);
  assert.deepEqual(permissionFlags({ all: false, read: ["/a", "/b"], env: true }), [
    "--no-prompt",
    "--allow-read=/a,/b",
    "--allow-env",
  ]);
});

Deno.test("fillPlaceholders takes names from kwargs and numbers from args", () => {
  assert.equal(fillPlaceholders("a {x} {0} {{lit}}", ["p"], { x: 1 }), "a 1 p {lit}");
  assert.throws(() => fillPlaceholders("{nope}", [], {}), /placeholder "\{nope\}"/);
});

Deno.test("workerPlan says which limit set the count and how to oversubscribe", () => {
  const base = {
    max_workers_per_node: 64,
    cores_per_worker: 1,
    mem_per_worker: null,
    available_accelerators: [],
  };
  const cores = workerPlan(base, 2, 64 * 1024 ** 3);
  assert.equal(cores.count, 2);
  assert.match(cores.why, /max_workers_per_node is 64, but 2 cores/);
  assert.match(cores.why, /cores_per_worker below 1/);
  const oversubscribed = workerPlan({ ...base, cores_per_worker: 0.1 }, 2, 64 * 1024 ** 3);
  assert.equal(oversubscribed.count, 20);
  const capped = workerPlan({ ...base, max_workers_per_node: 4 }, 8, 64 * 1024 ** 3);
  assert.equal(capped.count, 4);
  assert.match(capped.why, /^max_workers_per_node 4 /);
  const memory = workerPlan({ ...base, mem_per_worker: 2 }, 8, 5 * 1024 ** 3);
  assert.equal(memory.count, 2);
  assert.match(memory.why, /mem_per_worker 2 GB/);
});
