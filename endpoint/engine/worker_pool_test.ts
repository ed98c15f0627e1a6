import assert from "node:assert/strict";
import { join } from "node:path";
import type { ResultMessage } from "../../sdk/protocol/mod.ts";
import { descendants, taskBuffer, until, valueOf } from "./_test_helpers.ts";
import { engineCommand, permissionFlags } from "./command.ts";
import { WorkerPool } from "./worker_pool.ts";
import { WARM_UP_TASK_ID } from "./frames.ts";

const command = engineCommand("worker", permissionFlags({}));

/** The environment of a test's workers, marked so that they can be told from other processes. */
function markedEnv(marker: string): Record<string, string> {
  return { ...Deno.env.toObject(), FUNCX_POOL_TEST: marker };
}

/** This process's descendants that carry `marker` (other tests may run beside this one). */
function marked(marker: string): number[] {
  return descendants().filter((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/environ`).includes(`FUNCX_POOL_TEST=${marker}\0`);
    } catch {
      return false; // gone
    }
  });
}

Deno.test("WorkerPool.start waits for readyWorkers; the others start a few at a time while tasks run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-pool-test-" });
  const results: ResultMessage[] = [];
  const heard: number[] = [];
  /** Workers spawned but not yet ready, seen each time `onWorkers` speaks. */
  const starting: number[] = [];
  let pool: WorkerPool | undefined = undefined;
  pool = await WorkerPool.start({
    workers: 6,
    command,
    logDir: join(dir, "logs"),
    onResult: (r) => results.push(r),
    startConcurrency: 2,
    readyWorkers: 2,
    onWorkers: (n) => {
      heard.push(n);
      if (pool) starting.push(pool.workerCount - pool.readyCount);
    },
  });
  try {
    assert.equal(pool.state, "running");
    const atStart = pool.readyCount;
    assert.ok(atStart >= 2 && atStart < 6, `${atStart} workers ready when start returned`);
    // Tasks submitted now run on the workers already up.
    for (let i = 0; i < 6; i++) {
      pool.submit({ task_id: `t${i}`, buffer: taskBuffer(() => Deno.pid), statuses: [] });
    }
    await until(() => results.length === 6 && pool!.readyCount === 6, "every task and worker");
    for (const r of results) assert.equal(typeof valueOf(r), "number");
    assert.equal(heard.at(-1), 6);
    assert.ok(heard.every((n, i) => i === 0 ? n > atStart : n > heard[i - 1]!), `${heard}`);
    assert.ok(starting.every((n) => n <= 2), `workers starting at once: ${starting}`);
    assert.equal(pool.startingCount, 0);
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WorkerPool.close() while workers are still starting leaves none behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-pool-test-" });
  const pool = await WorkerPool.start({
    workers: 8,
    command,
    logDir: join(dir, "logs"),
    onResult: () => {},
    startConcurrency: 2,
    readyWorkers: 1,
    env: markedEnv(dir),
  });
  try {
    assert.ok(pool.startingCount > 0, "every worker was spawned before start returned");
  } finally {
    await pool.close();
  }
  assert.equal(pool.state, "stopped");
  assert.deepEqual(marked(dir), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("WorkerPool.start fails when a worker fails before readyWorkers are up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-pool-test-" });
  try {
    await assert.rejects(
      WorkerPool.start({
        workers: 4,
        command: [Deno.execPath(), "eval", "Deno.exit(3)"],
        logDir: join(dir, "logs"),
        onResult: () => {},
        startConcurrency: 2,
        readyWorkers: 2,
        env: markedEnv(dir),
      }),
      /exited with code 3 before its handshake/,
    );
    assert.deepEqual(marked(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("what the pool sets for a worker alone is gone from its tasks' environment, and a value the endpoint had is kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-pool-test-" });
  const results: ResultMessage[] = [];
  const base = Deno.env.toObject();
  delete base["MALLOC_ARENA_MAX"];
  delete base["DENO_NO_UPDATE_CHECK"];
  for (
    const [env, arenas] of [[base, undefined], [{ ...base, MALLOC_ARENA_MAX: "4" }, "4"]] as const
  ) {
    results.length = 0;
    const pool = await WorkerPool.start({
      workers: 1,
      command,
      logDir: join(dir, "logs"),
      onResult: (r) => results.push(r),
      env,
    });
    try {
      pool.submit({
        task_id: "env",
        buffer: taskBuffer(() => {
          const child = new Deno.Command("/usr/bin/env", { stdout: "piped" }).outputSync();
          return {
            pid: Deno.pid,
            own: [
              Deno.env.get("MALLOC_ARENA_MAX") ?? null,
              Deno.env.get("DENO_NO_UPDATE_CHECK") ?? null,
            ],
            child: new TextDecoder().decode(child.stdout).split("\n")
              .filter((l) =>
                /^(MALLOC_ARENA_MAX|DENO_NO_UPDATE_CHECK|FUNCX_WORKER_ONLY_ENV)=/.test(l)
              ),
          };
        }),
        statuses: [],
      });
      await until(() => results.length === 1, "the task's result");
      const r = valueOf(results[0]!) as { pid: number; own: (string | null)[]; child: string[] };
      // The worker itself started with them...
      const started = Deno.readTextFileSync(`/proc/${r.pid}/environ`).split("\0");
      assert.ok(started.includes(`MALLOC_ARENA_MAX=${arenas ?? "2"}`), started.join(" "));
      assert.ok(started.includes("DENO_NO_UPDATE_CHECK=1"));
      // ...and the task sees only what the endpoint had.
      assert.deepEqual(r.own, [arenas ?? null, null]);
      assert.deepEqual(r.child, arenas ? [`MALLOC_ARENA_MAX=${arenas}`] : []);
    } finally {
      await pool.close();
    }
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("workers start without transparent huge pages unless hugePages; the pool's process keeps them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-pool-test-" });
  /** The `THP_enabled` line of /proc/self/status: 1 when the process may have huge pages. */
  const thpOf = (status: string) => Number(/^THP_enabled:\s*(\d)/m.exec(status)?.[1]);
  const own = thpOf(await Deno.readTextFile("/proc/self/status"));
  assert.equal(own, 1, "this test runs with transparent huge pages allowed");
  try {
    for (const hugePages of [false, true]) {
      const results: ResultMessage[] = [];
      const pool = await WorkerPool.start({
        workers: 1,
        command,
        logDir: join(dir, `logs-${hugePages}`),
        onResult: (r) => results.push(r),
        hugePages,
      });
      try {
        pool.submit({
          task_id: "thp",
          buffer: taskBuffer(() => Deno.readTextFileSync("/proc/self/status")),
          statuses: [],
        });
        await until(() => results.length === 1, "the task's result");
        assert.equal(
          thpOf(String(valueOf(results[0]!))),
          hugePages ? 1 : 0,
          `hugePages ${hugePages}`,
        );
      } finally {
        await pool.close();
      }
      assert.equal(thpOf(await Deno.readTextFile("/proc/self/status")), own, "unchanged here");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The command of a worker written in `dir` as `name`: it says hello over stdout, then runs `loop`
 * (source text, with `readFrames` and `Deno.stdin` at hand) on what the pool sends it.
 */
async function helloWorker(dir: string, name: string, loop: string): Promise<string[]> {
  const script = join(dir, name);
  await Deno.writeTextFile(
    script,
    `import { encodeFrame, readFrames, WORKER_PROTOCOL_VERSION } from ${
      JSON.stringify(new URL("./frames.ts", import.meta.url).href)
    };
    await Deno.stdout.write(encodeFrame({ type: "hello", protocol: WORKER_PROTOCOL_VERSION, pid: Deno.pid }));
    ${loop}`,
  );
  return [
    Deno.execPath(),
    "run",
    "--allow-read",
    "--allow-write",
    `--config=${new URL("../../deno.json", import.meta.url).pathname}`,
    script,
  ];
}

Deno.test("a worker counts as ready only once it ran the warm-up task sent after its handshake", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-pool-test-" });
  try {
    // A worker that says hello, writes down each task it is sent, and never answers one.
    const seen = join(dir, "seen.txt");
    const seenPath = JSON.stringify(seen);
    await assert.rejects(
      WorkerPool.start({
        workers: 1,
        command: await helloWorker(
          dir,
          "silent_worker.ts",
          `for await (const msg of readFrames(Deno.stdin.readable)) {
            await Deno.writeTextFile(${seenPath}, msg.task_id + "\\n", { append: true });
          }`,
        ),
        logDir: join(dir, "logs"),
        onResult: () => {},
        startTimeoutS: 3,
      }),
      /did not start within 3 s/,
    );
    assert.equal(await Deno.readTextFile(seen), `${WARM_UP_TASK_ID}\n`);

    // One that dies on its warm-up task is reported as dying there, not before its handshake.
    await assert.rejects(
      WorkerPool.start({
        workers: 1,
        command: await helloWorker(
          dir,
          "dying_worker.ts",
          "for await (const _ of readFrames(Deno.stdin.readable)) Deno.exit(3);",
        ),
        logDir: join(dir, "logs-dying"),
        onResult: () => {},
        startTimeoutS: 30,
      }),
      /exited with code 3 before its warm-up task/,
    );

    // A real worker answers it; the pool keeps that result to itself.
    const results: ResultMessage[] = [];
    const pool = await WorkerPool.start({
      workers: 1,
      command,
      logDir: join(dir, "logs-real"),
      onResult: (r) => results.push(r),
    });
    try {
      assert.equal(pool.readyCount, 1);
      pool.submit({ task_id: "real", buffer: taskBuffer(() => 7), statuses: [] });
      await until(() => results.length === 1, "the real task's result");
      assert.deepEqual(results.map((r) => [r.task_id, valueOf(r)]), [["real", 7]]);
    } finally {
      await pool.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
