/**
 * End-to-end through the engine: SDK -> service -> broker -> endpoint daemon -> interchange ->
 * manager (in the daemon, or a subprocess over TCP) -> Deno worker subprocesses -> back, including a ShellFunction and a failure the
 * engine makes itself (a worker that dies).
 */
import assert from "node:assert/strict";
import { TaskExecutionFailed } from "../mod.ts";
import { shellFunctionSource } from "../endpoint/engine/shell.ts";
import { clientOf, startStack } from "./harness/stack.ts";
import { waitForResult } from "./harness/wait.ts";
import { LOCAL_MANAGER_MODES } from "../endpoint/engine/_test_helpers.ts";

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine end to end (${mode} manager): tasks, a ShellFunction and a lost worker through the whole stack`, async (t) => {
    await using stack = await startStack({
      workers: 2,
      config: { engine: { local_manager: mode } },
    });
    const fx = clientOf(stack.service);
    const ep = stack.endpoint.endpointId;

    const parent = mode === "process" ? "a manager, not the daemon" : "the daemon";
    await t.step(`a task runs in a worker whose parent is ${parent}`, async () => {
      const fnId = await fx.registerFunction(() => ({ pid: Deno.pid, ppid: Deno.ppid }));
      const r = await waitForResult(fx, await fx.run(fnId, ep)) as { pid: number; ppid: number };
      const daemon = stack.endpoint.process.child.pid;
      assert.notEqual(r.pid, daemon);
      if (mode === "in_process") {
        assert.equal(r.ppid, daemon);
        return;
      }
      assert.notEqual(r.ppid, daemon);
      const managerStat = await Deno.readTextFile(`/proc/${r.ppid}/stat`);
      const managerParent = Number(
        managerStat.slice(managerStat.lastIndexOf(")") + 2).split(" ")[1],
      );
      assert.equal(managerParent, daemon);
    });

    await t.step("a ShellFunction returns returncode, stdout, stderr and cmd", async () => {
      const shellFn = (0, eval)(`(${shellFunctionSource({ cmd: "echo {word} | tr a-z A-Z" })})`);
      const fnId = await fx.registerFunction(shellFn);
      const r = await waitForResult(
        fx,
        await fx.run(fnId, ep, { kwargs: { word: "funcx" } }),
      );
      assert.deepEqual(r, {
        returncode: 0,
        stdout: "FUNCX\n",
        stderr: "",
        cmd: "echo funcx | tr a-z A-Z",
      });
    });

    await t.step(
      "a worker that dies fails its task with WorkerLost and the endpoint goes on",
      async () => {
        const fnId = await fx.registerFunction(() => Deno.kill(Deno.pid, "SIGKILL"));
        const err = await waitForResult(fx, await fx.run(fnId, ep)).then(
          () => assert.fail("expected WorkerLost"),
          (e) => e,
        );
        assert.ok(err instanceof TaskExecutionFailed, String(err));
        assert.equal(err.remote.name, "WorkerLost");
        assert.match(err.remote.message, /died with signal SIGKILL/);
        const ok = await fx.registerFunction((a: number) => a + 1);
        assert.equal(await waitForResult(fx, await fx.run(ok, ep, { args: [41] })), 42);
      },
    );
  });
}
