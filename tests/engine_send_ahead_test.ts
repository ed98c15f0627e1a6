/**
 * Tasks sent ahead through the whole engine (interchange, manager in the daemon's process or a
 * subprocess, real workers): a manager whose workers' tasks are short says how many more tasks
 * they can take (`ahead`), and the interchange sends it that many beyond its prefetch.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createEngine } from "../endpoint/engine/mod.ts";
import { LOCAL_MANAGER_MODES, taskBuffer, valueOf } from "../endpoint/engine/_test_helpers.ts";

/** Runs `n` short tasks on one worker with no prefetch; the most tasks the interchange let go. */
async function mostOutOfTheInterchange(
  mode: (typeof LOCAL_MANAGER_MODES)[number],
  sendAhead: number,
  n: number,
): Promise<number> {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    local_manager: mode,
    max_workers_per_node: 1,
    prefetch_capacity: 0,
    worker_send_ahead: sendAhead,
    run_dir: join(dir, "run"),
  }, { graceS: 2 });
  const short = async (i: number) => {
    await new Promise((r) => setTimeout(r, 1));
    return i;
  };
  // A first short task: the worker counts as one whose tasks are short from then on.
  assert.equal(valueOf(await engine.submit("warm", taskBuffer(short, [0]))), 0);
  let settled = 0;
  let most = 0;
  const runs = Array.from({ length: n }, (_, i) => {
    const p = engine.submit(`t${i}`, taskBuffer(short, [i])).then((r) => {
      settled++;
      return r;
    });
    return p;
  });
  const watch = setInterval(() => {
    most = Math.max(most, n - settled - engine.status().pending_tasks);
  }, 1);
  try {
    const results = await Promise.all(runs);
    results.forEach((r, i) => assert.equal(valueOf(r), i));
  } finally {
    clearInterval(watch);
  }
  await Deno.remove(dir, { recursive: true });
  return most;
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): short tasks go ahead to a busy worker beyond the prefetch`, async () => {
    const most = await mostOutOfTheInterchange(mode, 4, 300);
    assert.ok(most > 1, `at most ${most} task(s) left the interchange at once`);
    assert.ok(most <= 1 + 4, `${most} tasks left the interchange at once, more than 1 + 4`);
  });
}

Deno.test("engine: without sending ahead, one worker and no prefetch hold one task at a time", async () => {
  const most = await mostOutOfTheInterchange("in_process", 0, 100);
  assert.equal(most, 1);
});
