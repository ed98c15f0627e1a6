/**
 * The engine with real processes: an interchange, managers (two subprocesses over TCP, or one in
 * the daemon's process) and their Deno worker subprocesses. Dispatch by capacity and prefetch, task transitions, remote errors,
 * ShellFunction and the per-worker log files.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createEngine } from "../endpoint/engine/mod.ts";
import { SHELL_FUNCTION_NAME, shellFunctionSource } from "../endpoint/engine/shell.ts";
import {
  errorOf,
  idleLocalStatus,
  sourceTaskBuffer,
  taskBuffer,
  until,
  valueOf,
} from "../endpoint/engine/_test_helpers.ts";

/** A task that records its worker's and manager's pids, then waits for `gate` to exist. */
function gated() {
  return async (d: string, g: string, n: string) => {
    await Deno.writeTextFile(`${d}/${n}`, `${Deno.pid} ${Deno.ppid}`);
    while (!(await Deno.stat(g).then(() => true, () => false))) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return { pid: Deno.pid, ppid: Deno.ppid };
  };
}

Deno.test("engine: two managers get tasks by free capacity, then bounded prefetch", async () => {
  const dir = await Deno.makeTempDir();
  const gate = join(dir, "gate");
  // Manager subprocesses, so that each task's parent pid names its manager.
  await using engine = await createEngine({
    local_manager: "process",
    managers: 2,
    max_workers_per_node: 2,
    cores_per_worker: 0.1,
    prefetch_capacity: 1,
    run_dir: join(dir, "run"),
  }, { graceS: 2 });
  assert.deepEqual(engine.status(), idleLocalStatus(2, 2));
  const fn = gated();
  const results = Array.from(
    { length: 10 },
    (_, i) => engine.submit(`t${i}`, taskBuffer(fn, [dir, gate, `t${i}`])),
  );
  // 4 run (2 per manager), 2 more are prefetched (1 per manager), 4 wait in the interchange.
  await until(() => {
    try {
      return [0, 1, 2, 3].every((i) => Deno.statSync(join(dir, `t${i}`)).isFile);
    } catch {
      return false;
    }
  }, "the first four tasks to start");
  assert.deepEqual(engine.status(), {
    managers: 2,
    total_workers: 4,
    idle_workers: 0,
    pending_tasks: 4,
    blocks: { pending: 0, running: 2, completed: 0, failed: 0 },
    provider: "local",
    provider_error: null,
  });
  const started = await Promise.all(
    [0, 1, 2, 3].map((i) => Deno.readTextFile(join(dir, `t${i}`))),
  );
  const perManager = new Map<string, number>();
  for (const s of started) {
    const ppid = s.split(" ")[1]!;
    perManager.set(ppid, (perManager.get(ppid) ?? 0) + 1);
  }
  assert.deepEqual([...perManager.values()], [2, 2]);
  await Deno.writeTextFile(gate, "");
  const done = await Promise.all(results);
  const ppids = new Set(done.map((r) => (valueOf(r) as { ppid: number }).ppid));
  assert.equal(ppids.size, 2);
  assert.equal(engine.status().pending_tasks, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("engine: results carry ns transitions from interchange, manager and worker", async () => {
  await using engine = await createEngine({ max_workers_per_node: 1 }, { graceS: 2 });
  const r = await engine.submit("a", taskBuffer((a: number, b: number) => a + b, [2, 3]));
  assert.equal(valueOf(r), 5);
  const statuses = r.task_statuses ?? [];
  assert.deepEqual(statuses.map((s) => `${s.state}/${s.actor}`), [
    "waiting-for-nodes/interchange",
    "waiting-for-launch/interchange",
    "running/manager",
    "execution-start/worker",
    "execution-end/worker",
  ]);
  for (let i = 1; i < statuses.length; i++) {
    assert.equal(typeof statuses[i]!.timestamp, "bigint");
    assert.ok(statuses[i]!.timestamp >= statuses[i - 1]!.timestamp);
  }
});

Deno.test("engine: a throwing task keeps its name, message and its own frames of the stack; console goes to the worker log", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({ max_workers_per_node: 1, run_dir: dir }, {
    graceS: 2,
  });
  const r = await engine.submit(
    "boom",
    taskBuffer(function explode(n: number) {
      console.log(`about to explode ${n}`);
      throw new RangeError(`bad ${n}`);
    }, [7]),
  );
  const err = errorOf(r);
  assert.equal(err.name, "RangeError");
  assert.equal(err.message, "bad 7");
  assert.match(err.stack, /explode/);
  // Only the user's frames: the function's own, none of the worker's machinery.
  assert.match(err.stack, /at explode \(funcx-function:explode/);
  assert.doesNotMatch(err.stack, /endpoint\/engine\/|ext:/);
  assert.equal(err.code, "RemoteExecutionError");
  await engine.close(); // the log is complete once the worker has exited
  const log = await Deno.readTextFile(join(dir, "manager_1", "worker_0.log"));
  assert.match(log, /about to explode 7/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("engine: ShellFunction fills placeholders and returns returncode, stdout, stderr", async () => {
  await using engine = await createEngine({ max_workers_per_node: 1 }, { graceS: 2 });
  const shell =
    (spec: Parameters<typeof shellFunctionSource>[0]) =>
    (args: unknown[], kwargs?: Record<string, unknown>) =>
      sourceTaskBuffer(SHELL_FUNCTION_NAME, shellFunctionSource(spec), args, kwargs);

  const ok = valueOf(
    await engine.submit(
      "s1",
      shell({ cmd: "echo {greeting} {0}; echo err >&2" })(["ada"], {
        greeting: "hello",
      }),
    ),
  );
  assert.deepEqual(ok, {
    returncode: 0,
    stdout: "hello ada\n",
    stderr: "err\n",
    cmd: "echo hello ada; echo err >&2",
  });

  const nonzero = valueOf(await engine.submit("s2", shell({ cmd: "exit 3" })([])));
  assert.equal((nonzero as { returncode: number }).returncode, 3);

  const failed = errorOf(
    await engine.submit("s3", shell({ cmd: "echo nope >&2; exit 4", fail_on_nonzero: true })([])),
  );
  assert.equal(failed.name, "ShellCommandFailed");
  assert.match(failed.message, /exited with code 4: nope/);

  const slow = valueOf(await engine.submit("s4", shell({ cmd: "sleep 30", timeout_s: 0.5 })([])));
  assert.equal((slow as { returncode: number }).returncode, 124);

  const missing = errorOf(await engine.submit("s5", shell({ cmd: "echo {who}" })([])));
  assert.match(missing.message, /placeholder "\{who\}"/);

  const snippet = valueOf(
    await engine.submit("s6", shell({ cmd: "seq 1 100", snippet_lines: 2 })([])),
  );
  assert.equal((snippet as { stdout: string }).stdout, "99\n100\n");
});
