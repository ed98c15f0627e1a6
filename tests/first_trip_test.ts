/**
 * End-to-end: functions registered from the SDK travel through the real service and a private
 * RabbitMQ node to a real endpoint process, run in Deno worker subprocesses, and their results
 * come back to the caller.
 */
import assert from "node:assert/strict";
import { FuncxAPIError, FuncXClient, TaskExecutionFailed, TaskPending } from "../mod.ts";
import { clientOf, startStack } from "./harness/stack.ts";
import { waitForResult } from "./harness/wait.ts";

Deno.test("first trip: SDK -> service -> broker -> endpoint -> worker -> back", async (t) => {
  await using stack = await startStack({ workers: 4 });
  const fx = clientOf(stack.service);
  const ep = stack.endpoint.endpointId;

  await t.step("a sync function returns structured data", async () => {
    const fnId = await fx.registerFunction(function describe(name: string, n: number) {
      return {
        greeting: `hello ${name}`,
        squares: Array.from({ length: n }, (_, i) => i * i),
        when: new Date(Date.UTC(2024, 0, 2)),
        tags: new Set(["a", "b"]),
        big: 2n ** 64n + BigInt(n),
        nested: { deep: { list: [1, "two", null] } },
      };
    });
    const result = await waitForResult(
      fx,
      await fx.run(fnId, ep, { args: ["ada", 4] }),
    ) as Record<string, unknown>;
    assert.equal(result["greeting"], "hello ada");
    assert.deepEqual(result["squares"], [0, 1, 4, 9]);
    assert.ok(result["when"] instanceof Date);
    assert.equal((result["when"] as Date).toISOString(), "2024-01-02T00:00:00.000Z");
    assert.deepEqual(result["tags"], new Set(["a", "b"]));
    assert.equal(result["big"], 2n ** 64n + 4n);
    assert.deepEqual(result["nested"], { deep: { list: [1, "two", null] } });
  });

  await t.step("an async function returns a Map and typed array", async () => {
    const fnId = await fx.registerFunction(async (xs: number[]) => {
      await new Promise((r) => setTimeout(r, 20));
      return new Map<string, unknown>([
        ["sum", xs.reduce((a, b) => a + b, 0)],
        ["bytes", new Uint8Array(xs)],
        ["pid", Deno.pid],
      ]);
    });
    const taskId = await fx.run(fnId, ep, { args: [[1, 2, 3]] });
    const result = await waitForResult(fx, taskId) as Map<string, unknown>;
    assert.ok(result instanceof Map);
    assert.equal(result.get("sum"), 6);
    assert.deepEqual(result.get("bytes"), new Uint8Array([1, 2, 3]));
    // It ran in a worker subprocess, not in this test process.
    assert.notEqual(result.get("pid"), Deno.pid);
    const info = await fx.getTask(taskId);
    assert.equal(info.status, "success");
    assert.equal(info.pending, false);
    assert.equal(typeof info.completion_t, "number");
  });

  await t.step("keyword arguments arrive as a last argument", async () => {
    const fnId = await fx.registerFunction((a: number, opts: { scale: number }) => a * opts.scale);
    const taskId = await fx.run(fnId, ep, { args: [7], kwargs: { scale: 6 } });
    assert.equal(await waitForResult(fx, taskId), 42);
  });

  await t.step(
    "a throwing function gives the caller the remote name, message and stack",
    async () => {
      const fnId = await fx.registerFunction(function explode(limit: number) {
        if (limit < 10) throw new RangeError(`limit ${limit} is below 10`);
        return limit;
      });
      const taskId = await fx.run(fnId, ep, { args: [3] });
      const err = await waitForResult(fx, taskId).then(
        () => assert.fail("expected the task to fail"),
        (e) => e,
      );
      assert.ok(err instanceof TaskExecutionFailed, String(err));
      assert.equal(err.remote.name, "RangeError");
      assert.equal(err.remote.message, "limit 3 is below 10");
      assert.match(err.remote.stack, /explode/);
      assert.equal(err.errorCode, "RemoteExecutionError");
      assert.ok(err.cause instanceof Error);
      assert.equal((err.cause as Error).name, "RangeError");
      assert.equal((await fx.getTask(taskId)).status, "failed");
    },
  );

  await t.step("getResult throws TaskPending while a task runs", async () => {
    const fnId = await fx.registerFunction(async () => {
      await new Promise((r) => setTimeout(r, 1500));
      return "late";
    });
    const taskId = await fx.run(fnId, ep);
    const pending = await fx.getResult(taskId).then(() => undefined, (e) => e);
    assert.ok(pending instanceof TaskPending, String(pending));
    assert.equal(pending.taskId, taskId);
    assert.equal(await waitForResult(fx, taskId), "late");
  });

  await t.step("1,000 tasks through 4 workers all return correct results", async () => {
    const fnId = await fx.registerFunction((i: number) => ({ i, square: i * i, pid: Deno.pid }));
    const { packArgs } = await import("../sdk/protocol/mod.ts");
    const taskIds: string[] = [];
    for (let start = 0; start < 1000; start += 250) {
      const batch = Array.from(
        { length: 250 },
        (_, k) => [fnId, ep, packArgs([start + k])] as [string, string, string],
      );
      const res = await fx.submit(batch);
      assert.equal(res.results.length, 250);
      for (const r of res.results) {
        assert.equal(r.status, "Success");
        taskIds.push(r.task_uuid!);
      }
    }
    assert.equal(new Set(taskIds).size, 1000);
    const pids = new Set<number>();
    for (const [i, id] of taskIds.entries()) {
      const r = await waitForResult(fx, id) as { i: number; square: number; pid: number };
      assert.equal(r.i, i);
      assert.equal(r.square, i * i);
      pids.add(r.pid);
    }
    // The work was spread over the pool, not run by one worker.
    assert.ok(pids.size > 1, `only ${pids.size} worker ran tasks`);
    assert.ok(pids.size <= 4);
  });

  await t.step("an unknown task id is a 404 task_not_found", async () => {
    const err = await fx.getTask(crypto.randomUUID()).then(() => undefined, (e) => e);
    assert.ok(err instanceof FuncxAPIError);
    assert.equal(err.httpStatus, 404);
    assert.equal(err.codeName, "task_not_found");
  });

  await t.step("a wrong token is refused with 401 unauthorized", async () => {
    const bad = new FuncXClient({ serviceAddress: stack.service.address, accessToken: "nope" });
    const err = await bad.getTask(crypto.randomUUID()).then(() => undefined, (e) => e);
    assert.ok(err instanceof FuncxAPIError);
    assert.equal(err.httpStatus, 401);
    assert.equal(err.codeName, "unauthorized");
  });
});
