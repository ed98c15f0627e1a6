/**
 * The engine when things go wrong, with real processes: a worker killed mid-task, a manager
 * that hangs or dies, walltime, cancellation, and a manager with the wrong secret.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { engineCommand } from "../endpoint/engine/command.ts";
import { OPTIONS_ENV, SECRET_ENV } from "../endpoint/engine/manager.ts";
import { createEngine } from "../endpoint/engine/mod.ts";
import { existsSync } from "node:fs";
import {
  descendants,
  errorOf,
  LOCAL_MANAGER_MODES,
  taskBuffer,
  until,
  valueOf,
} from "../endpoint/engine/_test_helpers.ts";

/** Writes "<worker pid> <manager pid>" to `<dir>/<name>`, then waits for `<dir>/gate`. */
const gated = async (dir: string, name: string) => {
  await Deno.writeTextFile(`${dir}/${name}`, `${Deno.pid} ${Deno.ppid}`);
  while (!(await Deno.stat(`${dir}/gate`).then(() => true, () => false))) {
    await new Promise((r) => setTimeout(r, 10));
  }
  return Deno.pid;
};

async function pidsOf(dir: string, name: string): Promise<[number, number]> {
  await until(() => {
    try {
      return Deno.readTextFileSync(join(dir, name)).includes(" ");
    } catch {
      return false;
    }
  }, `task ${name} to start`);
  const [w, m] = (await Deno.readTextFile(join(dir, name))).split(" ").map(Number);
  return [w!, m!];
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): a worker killed mid-task fails that task with WorkerLost; others go on`, async () => {
    const dir = await Deno.makeTempDir();
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 2,
      cores_per_worker: 0.1,
    }, {
      graceS: 2,
    });
    const a = engine.submit("a", taskBuffer(gated, [dir, "a"]));
    const b = engine.submit("b", taskBuffer(gated, [dir, "b"]));
    const [victim] = await pidsOf(dir, "a");
    await pidsOf(dir, "b");
    Deno.kill(victim, "SIGKILL");
    const lost = errorOf(await a);
    assert.equal(lost.name, "WorkerLost");
    assert.equal(lost.code, "WorkerLost");
    assert.match(lost.message, /died with signal SIGKILL while running task "a"/);
    await Deno.writeTextFile(join(dir, "gate"), "");
    assert.equal(typeof valueOf(await b), "number");
    // The replacement joins the pool and runs tasks.
    await until(() => engine.status().total_workers === 2, "a replacement worker");
    const pids = await Promise.all(
      [1, 2, 3, 4].map(async (i) =>
        valueOf(await engine.submit(`c${i}`, taskBuffer(gated, [dir, `c${i}`])))
      ),
    );
    assert.ok(!pids.includes(victim));
    await Deno.remove(dir, { recursive: true });
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): a task over its walltime fails with TaskWalltimeExceeded and the worker is replaced`, async () => {
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 1,
      task_walltime_s: 0.5,
    }, {
      graceS: 2,
    });
    const r = await engine.submit("slow", taskBuffer(() => new Promise(() => {})));
    const err = errorOf(r);
    assert.equal(err.name, "TaskWalltimeExceeded");
    assert.match(err.message, /exceeded its walltime of 0.5 s/);
    assert.equal(valueOf(await engine.submit("fast", taskBuffer(() => "ok"))), "ok");
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): cancel of a queued and a running task resolves both with TaskCancelled`, async () => {
    const dir = await Deno.makeTempDir();
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 1,
      prefetch_capacity: 0,
    }, {
      graceS: 2,
    });
    const running = engine.submit("run", taskBuffer(gated, [dir, "run"]));
    const queued = engine.submit("queued", taskBuffer(gated, [dir, "queued"]));
    await pidsOf(dir, "run");
    assert.equal(engine.status().pending_tasks, 1);
    assert.equal(engine.cancel("queued"), true);
    const q = errorOf(await queued);
    assert.equal(q.name, "TaskCancelled");
    assert.match(q.message, /before it started/);
    assert.equal(engine.cancel("run"), true);
    const r = errorOf(await running);
    assert.equal(r.name, "TaskCancelled");
    assert.match(r.message, /while running/);
    assert.equal(engine.cancel("run"), false);
    assert.equal(engine.cancel("never-submitted"), false);
    // The queued task never ran, and the pool goes on.
    await Deno.writeTextFile(join(dir, "gate"), "");
    assert.equal(
      typeof valueOf(await engine.submit("next", taskBuffer(gated, [dir, "next"]))),
      "number",
    );
    assert.equal(await Deno.stat(join(dir, "queued")).then(() => true, () => false), false);
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("engine (process manager): a hung manager is lost after heartbeat_threshold; its tasks fail with ManagerLost", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    local_manager: "process",
    max_workers_per_node: 1,
    heartbeat_period: 0.2,
    heartbeat_threshold: 1.5,
  }, { graceS: 2 });
  const task = engine.submit("t", taskBuffer(gated, [dir, "t"]));
  const [, manager] = await pidsOf(dir, "t");
  Deno.kill(manager, "SIGSTOP");
  const err = errorOf(await task);
  assert.equal(err.name, "ManagerLost");
  assert.equal(err.code, "ManagerLost");
  assert.match(err.message, /no heartbeat for over 1.5 s/);
  // The lost block is stopped and replaced; work goes on on the new manager.
  await Deno.writeTextFile(join(dir, "gate"), "");
  await until(() => engine.status().managers === 1, "a replacement manager");
  const r = await engine.submit("after", taskBuffer(() => Deno.ppid));
  assert.notEqual(valueOf(r), manager);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("engine (process manager): a killed manager's task is retried on a new manager when max_retries_on_manager_lost allows", async () => {
  const dir = await Deno.makeTempDir();
  await using engine = await createEngine({
    local_manager: "process",
    max_workers_per_node: 1,
    max_retries_on_manager_lost: 1,
  }, { graceS: 2 });
  const task = engine.submit("t", taskBuffer(gated, [dir, "t"]));
  const [, manager] = await pidsOf(dir, "t");
  Deno.kill(manager, "SIGKILL");
  // The task starts again on the replacement manager.
  await until(() => {
    try {
      const text = Deno.readTextFileSync(join(dir, "t"));
      return text.includes(" ") && Number(text.split(" ")[1]) !== manager;
    } catch {
      return false;
    }
  }, "the task to start on a new manager");
  await Deno.writeTextFile(join(dir, "gate"), "");
  const r = await task;
  assert.equal(typeof valueOf(r), "number");
  const launches = (r.task_statuses ?? []).filter((s) => s.state === "waiting-for-launch");
  assert.equal(launches.length, 2);
  await Deno.remove(dir, { recursive: true });
});

/** First run: writes its worker pid to `<dir>/<name>` and hangs; a later run returns "retried". */
const onceLost = async (dir: string, name: string) => {
  const file = `${dir}/${name}`;
  if (await Deno.stat(file).then(() => true, () => false)) return "retried";
  await Deno.writeTextFile(file, `${Deno.pid} ${Deno.ppid}`);
  return await new Promise<string>(() => {});
};

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): a task whose worker is killed runs again under max_retries_on_system_failure; the result counts 2 attempts`, async () => {
    const dir = await Deno.makeTempDir();
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 1,
      max_retries_on_system_failure: 1,
    }, { graceS: 2 });
    const task = engine.submit("t", taskBuffer(onceLost, [dir, "t"]));
    const [worker] = await pidsOf(dir, "t");
    Deno.kill(worker, "SIGKILL");
    const r = await task;
    assert.equal(valueOf(r), "retried");
    assert.equal(r.attempts, 2);
    const states = (r.task_statuses ?? []).map((s) => s.state);
    assert.equal(states.filter((s) => s === "waiting-for-launch").length, 2);
    assert.equal(states.filter((s) => s === "waiting-for-nodes").length, 2);
    assert.equal(states.filter((s) => s === "running").length, 2);
    assert.equal(states.includes("failed"), false);
    await Deno.remove(dir, { recursive: true });
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): with retries used up (or off) a killed worker's task fails with WorkerLost`, async () => {
    const dir = await Deno.makeTempDir();
    await using engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: 1,
      max_retries_on_system_failure: 1,
    }, { graceS: 2 });
    // Each run hangs: both attempts are killed, and the second failure is final.
    const hang = async (dir: string, name: string, n: number) => {
      await Deno.writeTextFile(`${dir}/${name}.${n}`, `${Deno.pid} ${Deno.ppid}`);
      await new Promise(() => {});
    };
    const task = engine.submit("t", taskBuffer(hang, [dir, "t", 0]));
    const [first] = await pidsOf(dir, "t.0");
    Deno.kill(first, "SIGKILL");
    // The retry's buffer is the same, so it writes the same file again with a new pid.
    await until(() => {
      try {
        const pid = Number(Deno.readTextFileSync(join(dir, "t.0")).split(" ")[0]);
        return pid !== first;
      } catch {
        return false;
      }
    }, "the retry to start");
    const [second] = await pidsOf(dir, "t.0");
    Deno.kill(second, "SIGKILL");
    const r = await task;
    const err = errorOf(r);
    assert.equal(err.name, "WorkerLost");
    assert.equal(r.attempts, 2);
    assert.match(r.error_details?.user_message ?? "", /after 2 attempts/);
    await Deno.remove(dir, { recursive: true });
  });
}

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): a manager with the wrong secret is refused`, async () => {
    await using engine = await createEngine({ local_manager: mode, max_workers_per_node: 1 }, {
      graceS: 2,
    });
    const options = engine.managerOptions("99", "intruder");
    const out = await new Deno.Command(engineCommand("manager", ["--allow-all"])[0]!, {
      args: engineCommand("manager", ["--allow-all"]).slice(1),
      env: { [SECRET_ENV]: "not-the-secret", [OPTIONS_ENV]: JSON.stringify(options) },
      stdin: "null",
    }).output();
    assert.equal(out.code, 1);
    assert.match(new TextDecoder().decode(out.stderr), /refused manager "intruder": wrong secret/);
    assert.equal(engine.status().managers, 1);
  });
}

Deno.test("engine (in_process manager): when the daemon is SIGKILLed, its workers exit too", async () => {
  // The daemon: a separate Deno process whose engine runs its manager in process.
  const script = `
    import { createEngine } from "${new URL("../endpoint/engine/mod.ts", import.meta.url)}";
    import { taskBuffer } from "${new URL("../endpoint/engine/_test_helpers.ts", import.meta.url)}";
    const engine = await createEngine({ local_manager: "in_process", max_workers_per_node: 2 });
    const pids = await Promise.all(["a", "b"].map((id) =>
      engine.submit(id, taskBuffer(() => new Promise((r) => setTimeout(() => r(Deno.pid), 300))))
    ));
    console.log(JSON.stringify(pids.map((r) => r.data)));
    await new Promise(() => {});
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--quiet",
      `--config=${new URL("../deno.json", import.meta.url).pathname}`,
      script,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const workers = descendants(child.pid);
  assert.equal(workers.length, 2, `the daemon's children: ${workers.join(", ")}`);
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel();
  await until(
    () => workers.every((pid) => !existsSync(`/proc/${pid}`)),
    "the workers of the killed daemon to exit",
    10_000,
  );
});
