/**
 * Many short tasks through the engine leave no processes or file descriptors behind. The load
 * runs in a fresh Deno process of its own, because the test runner runs files in parallel in one
 * process, whose /proc counts the other files' children and descriptors too.
 */
import assert from "node:assert/strict";
import { createEngine } from "../endpoint/engine/mod.ts";
import { existsSync } from "node:fs";
import {
  idleLocalStatus,
  LOCAL_MANAGER_MODES,
  taskBuffer,
  until,
  valueOf,
} from "../endpoint/engine/_test_helpers.ts";

const ROOT = new URL("../", import.meta.url);

const script = (mode: string) => `
import { createEngine } from "${new URL("endpoint/engine/mod.ts", ROOT)}";
import { descendants, openFds, taskBuffer, valueOf } from "${new URL(
  "endpoint/engine/_test_helpers.ts",
  ROOT,
)}";
// A first run opens what the runtime keeps for good (the SIGCHLD handler, thread pools, and a
// socket pair of its own that appears once, some hundreds to a few thousand tasks in depending on
// speed). A leak grows with every run: the descriptors after the second measured run must be
// those after the first.
const warm = await createEngine({ local_manager: "${mode}", managers: 2, max_workers_per_node: 1 }, { graceS: 2 });
await Promise.all(Array.from({ length: 3000 }, (_, i) => warm.submit("w" + i, taskBuffer(() => i))));
await warm.close();
const before = { fds: openFds(), procs: descendants().length };
async function measured(tag) {
  const engine = await createEngine(
    { local_manager: "${mode}", managers: 2, max_workers_per_node: 2, cores_per_worker: 0.5 },
    { graceS: 2 },
  );
  const running = descendants().length;
  let correct = 0;
  for (let start = 0; start < 10000; start += 2500) {
    const results = await Promise.all(Array.from({ length: 2500 }, (_, k) =>
      engine.submit(tag + (start + k), taskBuffer((n) => n * 2, [start + k]))));
    for (const [k, r] of results.entries()) if (valueOf(r) === (start + k) * 2) correct++;
  }
  const status = engine.status();
  await engine.close();
  return { running, correct, status, after: { fds: openFds(), procs: descendants().length } };
}
const first = await measured("a");
const second = await measured("b");
console.log(JSON.stringify({ before, first, second }));
`;

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): 10,000 short tasks over two managers; no process or fd leak after close`, async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", `--config=${new URL("deno.json", ROOT).pathname}`, script(mode)],
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    assert.equal(r.before.procs, 0);
    for (const run of [r.first, r.second]) {
      assert.equal(run.correct, 10_000);
      assert.deepEqual(run.status, idleLocalStatus(2, 2));
      // 4 workers, and 2 managers unless they run in this process
      const engineProcs = mode === "process" ? 6 : 4;
      assert.ok(run.running >= engineProcs, `only ${run.running} engine processes`);
      assert.equal(run.after.procs, 0);
    }
    assert.equal(r.second.after.fds, r.first.after.fds, "descriptors left by a run");
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): local blocks scale out for waiting tasks and back in when idle`, async () => {
    await using engine = await createEngine({
      local_manager: mode,
      init_blocks: 0,
      min_blocks: 0,
      max_blocks: 2,
      max_workers_per_node: 1,
      prefetch_capacity: 0,
      max_idletime: 0.5,
      strategy_period: 0.2,
    }, { graceS: 2 });
    assert.equal(engine.blocks.length, 0);
    const slow = taskBuffer(() => new Promise((r) => setTimeout(() => r(Deno.pid), 500)));
    const pids = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => valueOf(await engine.submit(`t${i}`, slow))),
    );
    assert.equal(new Set(pids).size, 2, "two blocks of one worker each ran the tasks");
    await until(() => engine.status().blocks?.completed === 2, "both blocks to scale in");
    assert.equal(engine.blocks.length, 0);
    // (Not all descendants: the runner may run other test files in this process.)
    const gone = (pid: unknown) => !existsSync(`/proc/${pid}`);
    await until(() => pids.every(gone), "the blocks' workers to exit", 10_000);
  });
}
