import assert from "node:assert/strict";
import { join } from "node:path";
import { type ResultMessage, TaskState } from "../../sdk/protocol/mod.ts";
import { errorOf, taskBuffer, until, valueOf } from "./_test_helpers.ts";
import { engineCommand, permissionFlags } from "./command.ts";
import type { PoolTask } from "./task_queue.ts";
import { WorkerPool, type WorkerPoolOptions } from "./worker_pool.ts";

const command = engineCommand("worker", permissionFlags({}));

/** A pool of real workers whose results land in `results` by task id. */
async function withPool(
  options: Partial<WorkerPoolOptions>,
  fn: (pool: WorkerPool, results: Map<string, ResultMessage>, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "funcx-ahead-test-" });
  const results = new Map<string, ResultMessage>();
  const pool = await WorkerPool.start({
    workers: 1,
    command,
    logDir: join(dir, "logs"),
    onResult: (r) => {
      assert.ok(!results.has(r.task_id), `a second result for ${r.task_id}`);
      results.set(r.task_id, r);
    },
    ...options,
  });
  try {
    await fn(pool, results, dir);
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const task = (id: string, buffer: string): PoolTask => ({ task_id: id, buffer, statuses: [] });

/** A task that appends its id to `<dir>/ran` (each run leaves a line) and returns it. */
function marking(dir: string, id: string): PoolTask {
  return task(
    id,
    taskBuffer((path: string, me: string) => {
      Deno.writeTextFileSync(path, `${me}\n`, { append: true });
      return me;
    }, [join(dir, "ran"), id]),
  );
}

/** A task that waits until `<dir>/<gate>` exists. */
function gated(dir: string, id: string, gate = "go"): PoolTask {
  return task(
    id,
    taskBuffer(async (path: string) => {
      for (;;) {
        try {
          Deno.statSync(path);
          return "released";
        } catch {
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    }, [join(dir, gate)]),
  );
}

async function ranLines(dir: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(join(dir, "ran"))).split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

const runningCount = (r: ResultMessage) =>
  (r.task_statuses ?? []).filter((s) => s.state === TaskState.RUNNING).length;

Deno.test("short tasks sent ahead to a worker each run once, in order", async () => {
  await withPool({ sendAhead: 3 }, async (pool, results, dir) => {
    const ids = Array.from({ length: 40 }, (_, i) => `t${String(i).padStart(2, "0")}`);
    for (const id of ids) pool.submit(marking(dir, id));
    await until(() => results.size === ids.length, "every result");
    for (const id of ids) assert.equal(valueOf(results.get(id)!), id);
    assert.deepEqual(await ranLines(dir), ids); // one worker: in submission order, once each
    assert.ok(pool.stats.sentAhead > 0, `sent ahead: ${JSON.stringify(pool.stats)}`);
    for (const r of results.values()) assert.equal(runningCount(r), 1);
  });
});

Deno.test("tasks sent ahead of a task that runs long are taken back, and run once later", async () => {
  await withPool({ sendAhead: 3, aheadMaxRunMs: 50 }, async (pool, results, dir) => {
    pool.submit(marking(dir, "warm"));
    await until(() => results.has("warm"), "the warm-up task");
    // The worker's last task was short: behind the gated one it is sent the next three.
    for (const t of [gated(dir, "long"), ...["a", "b", "c"].map((id) => marking(dir, id))]) {
      pool.submit(t);
    }
    await until(() => pool.stats.takenBack === 3, "the three taken back");
    assert.equal(pool.stats.sentAhead, 3);
    assert.deepEqual(await ranLines(dir), ["warm"]);
    assert.equal(pool.pendingCount, 3);
    await Deno.writeTextFile(join(dir, "go"), "");
    await until(() => results.size === 5, "every result");
    assert.equal(valueOf(results.get("long")!), "released");
    assert.deepEqual(await ranLines(dir), ["warm", "a", "b", "c"]);
    for (const r of results.values()) assert.equal(runningCount(r), 1, r.task_id);
  });
});

Deno.test("with two workers, a task sent behind a long one runs on the other worker", async () => {
  await withPool({ workers: 2, sendAhead: 2 }, async (pool, results, dir) => {
    pool.submit(marking(dir, "w1"));
    pool.submit(marking(dir, "w2"));
    await until(() => results.size === 2, "the warm-up tasks");
    for (const t of [gated(dir, "long"), ...["a", "b", "c", "d"].map((id) => marking(dir, id))]) {
      pool.submit(t);
    }
    await until(() => ["a", "b", "c", "d"].every((id) => results.has(id)), "the short tasks");
    assert.equal(results.has("long"), false, "the short tasks waited for the long one");
    await Deno.writeTextFile(join(dir, "go"), "");
    await until(() => results.has("long"), "the long task");
    assert.equal((await ranLines(dir)).length, 6);
  });
});

Deno.test("a task cancelled while sent ahead never runs", async () => {
  await withPool({ sendAhead: 3, aheadMaxRunMs: 60_000 }, async (pool, results, dir) => {
    pool.submit(marking(dir, "warm"));
    await until(() => results.has("warm"), "the warm-up task");
    pool.submit(gated(dir, "long"));
    pool.submit(marking(dir, "a"));
    pool.submit(marking(dir, "b"));
    await until(() => pool.stats.sentAhead === 2, "two tasks sent ahead");
    assert.equal(pool.cancel("a"), true);
    await until(() => results.has("a"), "the cancelled task's result");
    assert.equal(errorOf(results.get("a")!).code, "TaskCancelled");
    await Deno.writeTextFile(join(dir, "go"), "");
    await until(() => results.size === 4, "every result");
    assert.equal(valueOf(results.get("b")!), "b");
    assert.deepEqual(await ranLines(dir), ["warm", "b"]);
  });
});

Deno.test("a worker that dies fails its task; the tasks sent ahead to it run elsewhere, once", async () => {
  await withPool({ sendAhead: 3, aheadMaxRunMs: 60_000 }, async (pool, results, dir) => {
    pool.submit(marking(dir, "warm"));
    await until(() => results.has("warm"), "the warm-up task");
    pool.submit(task("dies", taskBuffer(() => Deno.exit(3))));
    for (const id of ["a", "b", "c"]) pool.submit(marking(dir, id));
    await until(() => results.size === 5, "every result");
    assert.equal(errorOf(results.get("dies")!).code, "WorkerLost");
    for (const id of ["a", "b", "c"]) assert.equal(valueOf(results.get(id)!), id);
    assert.deepEqual(await ranLines(dir), ["warm", "a", "b", "c"]);
    assert.ok(pool.stats.sentAhead >= 3, `sent ahead: ${pool.stats.sentAhead}`);
  });
});

Deno.test("a worker whose task runs long is sent the next one, which it runs as that one ends", async () => {
  for (const sendAhead of [3, 0]) {
    await withPool({ sendAhead }, async (pool, results, dir) => {
      pool.submit(gated(dir, "long"));
      pool.submit(marking(dir, "next"));
      if (sendAhead > 0) {
        // Sent behind the long task at once (one only: the worker's last task was not short).
        await until(() => pool.stats.sentAhead === 1, "the next task sent ahead");
        assert.equal(pool.pendingCount, 0);
      } else {
        await until(() => pool.idleCount === 0 && pool.pendingCount === 1, "the long task running");
        assert.equal(pool.pendingCount, 1);
      }
      assert.deepEqual(await ranLines(dir), []);
      await Deno.writeTextFile(join(dir, "go"), "");
      await until(() => results.size === 2, "both results");
      assert.equal(valueOf(results.get("next")!), "next");
      for (const r of results.values()) assert.equal(runningCount(r), 1, r.task_id);
      assert.equal(pool.stats.sentAhead, sendAhead > 0 ? 1 : 0);
      assert.equal(pool.stats.takenBack, 0);
    });
  }
});

Deno.test("a task sent behind a long one is taken back for a worker that goes free", async () => {
  await withPool({ workers: 2, sendAhead: 3 }, async (pool, results, dir) => {
    // The first worker runs "long", the second "medium"; "x" is sent behind "long".
    pool.submit(gated(dir, "long"));
    pool.submit(gated(dir, "medium", "go-medium"));
    pool.submit(marking(dir, "x"));
    await until(() => pool.stats.sentAhead === 1, "x sent ahead");
    await Deno.writeTextFile(join(dir, "go-medium"), "");
    // The second worker goes free and x comes back for it, while "long" still runs.
    await until(() => results.has("x"), "x");
    assert.equal(valueOf(results.get("x")!), "x");
    assert.equal(results.has("long"), false);
    assert.equal(pool.stats.takenBack, 1);
    await Deno.writeTextFile(join(dir, "go"), "");
    await until(() => results.size === 3, "every result");
    assert.deepEqual(await ranLines(dir), ["x"]);
    for (const r of results.values()) assert.equal(runningCount(r), 1, r.task_id);
  });
});
