/**
 * The engine's resource settings with real processes: accelerator pinning (and accelerators
 * going back to the pool), the workers' Deno permission set, the per-worker memory limit and
 * worker_init.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createEngine } from "../endpoint/engine/mod.ts";
import {
  errorOf,
  LOCAL_MANAGER_MODES,
  taskBuffer,
  until,
  valueOf,
} from "../endpoint/engine/_test_helpers.ts";

const devices = () => ({
  pid: Deno.pid,
  cuda: Deno.env.get("CUDA_VISIBLE_DEVICES"),
  rocr: Deno.env.get("ROCR_VISIBLE_DEVICES"),
  sycl: Deno.env.get("SYCL_DEVICE_FILTER"),
});
type Devices = ReturnType<typeof devices>;

/** Runs `n` tasks at once, each holding its worker a moment so that all workers take part. */
async function onEveryWorker(
  engine: Awaited<ReturnType<typeof createEngine>>,
  n: number,
  tag: string,
): Promise<Devices[]> {
  const dir = await Deno.makeTempDir();
  const fn = async (d: string, i: number, count: number) => {
    await Deno.writeTextFile(`${d}/${i}`, "");
    // Wait until every task has started, so each one is on a different worker.
    while ([...Deno.readDirSync(d)].length < count) await new Promise((r) => setTimeout(r, 10));
    return {
      pid: Deno.pid,
      cuda: Deno.env.get("CUDA_VISIBLE_DEVICES"),
      rocr: Deno.env.get("ROCR_VISIBLE_DEVICES"),
      sycl: Deno.env.get("SYCL_DEVICE_FILTER"),
    };
  };
  const out = await Promise.all(
    Array.from(
      { length: n },
      async (_, i) =>
        valueOf(await engine.submit(`${tag}${i}`, taskBuffer(fn, [dir, i, n]))) as Devices,
    ),
  );
  await Deno.remove(dir, { recursive: true });
  return out;
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): each worker is pinned to one accelerator, and gets it back after a crash`, async () => {
    const runDir = await Deno.makeTempDir();
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 8,
      available_accelerators: ["3", "7"],
      run_dir: runDir,
    }, { graceS: 2 });
    assert.equal(engine.status().total_workers, 2);
    const first = await onEveryWorker(engine, 2, "a");
    assert.deepEqual(first.map((d) => d.cuda).sort(), ["3", "7"]);
    for (const d of first) {
      assert.equal(d.rocr, d.cuda);
      assert.equal(d.sycl, `*:*:${d.cuda}`);
    }
    // Kill the worker on "7": its replacement must be pinned to "7" again.
    const victim = first.find((d) => d.cuda === "7")!;
    Deno.kill(victim.pid, "SIGKILL");
    // The manager has seen the death once it starts worker 2 (workers 0 and 1 came first).
    await until(() => {
      try {
        return Deno.statSync(join(runDir, "manager_1", "worker_2.log")).isFile;
      } catch {
        return false;
      }
    }, "the replacement worker");
    // Both tasks wait for each other, so one of them must run on the replacement worker.
    const again = await onEveryWorker(engine, 2, "b");
    assert.ok(!again.some((d) => d.pid === victim.pid));
    assert.deepEqual(again.map((d) => d.cuda).sort(), ["3", "7"]);
    await engine.close();
    await Deno.remove(runDir, { recursive: true });
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): the workers' permission set allows what it lists and refuses the rest`, async () => {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(join(dir, "allowed.txt"), "inside");
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 1,
      permissions: { all: false, read: [dir], env: ["HOME"] },
    }, { graceS: 2 });
    const read = (path: string) => Deno.readTextFile(path);
    assert.equal(
      valueOf(await engine.submit("r1", taskBuffer(read, [join(dir, "allowed.txt")]))),
      "inside",
    );
    const denied = errorOf(await engine.submit("r2", taskBuffer(read, ["/etc/hostname"])));
    assert.equal(denied.name, "NotCapable");
    assert.match(denied.message, /read access to "\/etc\/hostname"/);
    const env = errorOf(await engine.submit("e1", taskBuffer(() => Deno.env.get("PATH"))));
    assert.equal(env.name, "NotCapable");
    assert.match(env.message, /env access to "PATH"/);
    const write = errorOf(
      await engine.submit(
        "w1",
        taskBuffer((p: string) => Deno.writeTextFile(p, "x"), [join(dir, "new.txt")]),
      ),
    );
    assert.equal(write.name, "NotCapable");
    assert.match(write.message, /write access/);
    await Deno.remove(dir, { recursive: true });
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): a worker over mem_per_worker dies and the task says it ran out of memory`, async () => {
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 1,
      mem_per_worker: 0.1,
    }, { graceS: 2 });
    const hog = () => {
      const keep: number[][] = [];
      for (;;) keep.push(Array.from({ length: 1e6 }, (_, i) => i + 0.5));
    };
    const err = errorOf(await engine.submit("hog", taskBuffer(hog)));
    assert.equal(err.name, "WorkerLost");
    assert.match(err.message, /ran out of memory \(mem_per_worker limit 102 MiB\)/);
    assert.equal(valueOf(await engine.submit("small", taskBuffer(() => 1 + 1))), 2);
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): worker_init runs before workers and its environment reaches them`, async () => {
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 1,
      worker_init: "export FUNCX_TEST_INIT=ready\ncd /",
    }, { graceS: 2 });
    assert.equal(
      valueOf(await engine.submit("i", taskBuffer(() => Deno.env.get("FUNCX_TEST_INIT")))),
      "ready",
    );
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): a failing worker_init is a clear start-up error`, async () => {
    const err = await createEngine({
      local_manager: mode,
      worker_init: "echo broken module >&2; exit 3",
    }, {
      graceS: 1,
    }).then(() => undefined, (e) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /worker_init failed with exit code 3: broken module/);
  });
}
