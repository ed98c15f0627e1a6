/**
 * The SDK's executor, batches and result stream through the whole real system: service, broker
 * (per-user result queues), endpoint process and workers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  FuncXExecutor,
  type FuncXFuture,
  MaxResultSizeExceeded,
  ResultTimeoutError,
  SerializationError,
  ShellFunction,
  type ShellResult,
  TaskCancelledError,
  TaskExecutionFailed,
} from "../mod.ts";
import { clientOf, startEndpoint, startStack } from "./harness/stack.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Runs a script in a fresh Deno process with the stack's environment; returns its stdout. */
async function script(source: string, env: Record<string, string>): Promise<string> {
  const file = join(await Deno.makeTempDir({ prefix: "funcx-script-" }), "script.ts");
  await Deno.writeTextFile(file, source.replaceAll("@funcx/sdk", join(ROOT, "mod.ts")));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", `--config=${join(ROOT, "deno.json")}`, file],
    env,
    stdin: "null",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`script failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

Deno.test("FuncXExecutor through the real system", async (t) => {
  await using stack = await startStack({ workers: 2 });
  const env = { ...stack.service.env, FUNCX_ENDPOINT_ID: stack.endpoint.endpointId };
  const client = clientOf(stack.service);
  const endpointId = stack.endpoint.endpointId;

  await t.step("submit gives typed futures with task ids; errors come back", async () => {
    await using fx = new FuncXExecutor({ endpointId, client });
    const sum = fx.submit((a: number, b: number) => a + b, 2, 40);
    const later = fx.submit(async (s: string) => {
      await new Promise((r) => setTimeout(r, 10));
      return s.toUpperCase();
    }, "hi");
    const boom = fx.submit(function fails() {
      throw new TypeError("nope");
    });
    assert.equal(await sum, 42);
    assert.equal(await later, "HI");
    const err = await boom.then(() => undefined, (e) => e);
    assert.ok(err instanceof TaskExecutionFailed);
    assert.equal(err.remote.name, "TypeError");
    assert.equal(err.remote.message, "nope");
    assert.match(sum.taskId ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(fx.taskCountSubmitted, 3);
  });

  await t.step("a task returning a function fails with a SerializationError", async () => {
    await using fx = new FuncXExecutor({ endpointId, client });
    const err = await fx.submit(() => () => 1).then(
      (v) => assert.fail(`resolved to ${JSON.stringify(v)}`),
      (e) => e,
    );
    assert.ok(err instanceof TaskExecutionFailed, String(err));
    assert.equal(err.remote.name, "SerializationError");
    assert.match(err.remote.message, /function/);
    // Data that only holds a function fails the same way.
    const nested = await fx.submit(() => ({ callback() {} })).then(() => undefined, (e) => e);
    assert.ok(nested instanceof TaskExecutionFailed, String(nested));
    assert.equal(nested.remote.name, "SerializationError");
  });

  await t.step("a function as an argument is refused by submit, before anything is sent", () => {
    const fx = new FuncXExecutor({ endpointId, client });
    assert.throws(
      () => fx.submit((f: () => number) => f(), () => 1),
      (e: unknown) => e instanceof SerializationError && /function/.test(e.message),
    );
    assert.equal(fx.taskCountSubmitted, 0);
  });

  await t.step("assigning taskGroupId reattaches: that group's results come here", async () => {
    const group = crypto.randomUUID();
    const slow = async (x: number) => {
      await new Promise((r) => setTimeout(r, 400));
      return x * 10;
    };
    const submitter = new FuncXExecutor({ endpointId, client, taskGroupId: group });
    const sent = [1, 2, 3].map((i) => submitter.submit(slow, i));
    await submitter.shutdown({ wait: false });
    assert.ok(sent.every((f) => f.taskId !== undefined));

    await using fx = new FuncXExecutor({ endpointId, client });
    const own = fx.submit(slow, 7); // in the executor's first group
    assert.notEqual(fx.taskGroupId, group);
    fx.taskGroupId = group;
    assert.equal(fx.taskGroupId, group);
    const reloaded = await fx.reloadTasks();
    assert.deepEqual(reloaded.map((f) => f.taskId).sort(), sent.map((f) => f.taskId).sort());
    assert.deepEqual((await Promise.all(reloaded)).sort(), [10, 20, 30]);
    // The future of the earlier group still settles, and new tasks go into the new group.
    assert.equal(await own, 70);
    const next = fx.submit(slow, 4);
    assert.equal(await next, 40);
    assert.ok((await client.getTaskGroup(group)).includes(next.taskId!));
    assert.throws(() => (fx.taskGroupId = "not-a-uuid"), TypeError);
  });

  await t.step("reloadTasks keeps the futures handed out before (unlike funcX)", async () => {
    await using fx = new FuncXExecutor({ endpointId, client });
    const running = fx.submit(async () => {
      await new Promise((r) => setTimeout(r, 500));
      return "done";
    });
    while (running.taskId === undefined) await new Promise((r) => setTimeout(r, 10));
    const reloaded = await fx.reloadTasks();
    assert.equal(reloaded.length, 1);
    assert.equal(reloaded[0], running, "a task already open gets the same future back");
    assert.equal(await running, "done");
    assert.notEqual(running.state, "cancelled");
  });

  await t.step(
    "reloadTasks takes a result straight from the other endpoint its task went to",
    async () => {
      // One group, two endpoints, one process: a task another executor sent to a second endpoint
      // comes back on the shared stream straight from that endpoint. The service does not forward
      // it again (the stream was attached long before the task), so an executor that accepted
      // only its own endpoint's results dropped it and waited for its 30-s safety-net read.
      const other = await startEndpoint({
        service: stack.service,
        dir: join(stack.dir, "other-endpoint"),
        workers: 1,
      });
      await using _stopOther = other.process;
      const group = crypto.randomUUID();
      const gate = join(stack.dir, `gate-${group}`);
      const submitter = new FuncXExecutor({
        endpointId: other.endpointId,
        client,
        taskGroupId: group,
      });
      // Attaches the group's stream; the gated task below is submitted well after the attach.
      assert.equal(
        await submitter.submit(async () => {
          await new Promise((r) => setTimeout(r, 400));
          return "first";
        }),
        "first",
      );
      const gated = submitter.submit(async (path: string) => {
        for (;;) {
          try {
            return await Deno.readTextFile(path);
          } catch {
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      }, gate);
      while (gated.taskId === undefined) await new Promise((r) => setTimeout(r, 10));
      await submitter.shutdown({ wait: false });

      await using fx = new FuncXExecutor({ endpointId, client, taskGroupId: group });
      const reloaded = await fx.reloadTasks();
      const waiting = reloaded.find((f) => f.taskId === gated.taskId);
      assert.ok(waiting, "the gated task is in the group");
      assert.equal(waiting.done, false, "still running when reattached");
      await Deno.writeTextFile(gate, "from the other endpoint");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const value = await Promise.race([
        waiting,
        // Far below the 30-s read from the service that an executor falls back on.
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no result from the stream in 15 s")), 15_000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.equal(value, "from the other endpoint");
      const [status] = (await client.getBatchResult([gated.taskId!])).values();
      assert.equal(status?.endpointId, other.endpointId, "the service names the task's endpoint");
    },
  );

  await t.step(
    "a result over 10 MiB fails with MaxResultSizeExceeded naming both sizes",
    async () => {
      await using fx = new FuncXExecutor({ endpointId, client });
      const err = await fx.submit(() => "x".repeat(11 * 1024 * 1024)).then(
        () => undefined,
        (e) => e,
      );
      assert.ok(err instanceof MaxResultSizeExceeded, String(err));
      assert.ok(err instanceof TaskExecutionFailed);
      assert.match(err.remote.message, /exceeded current limit of 10485760B/);
      assert.match(err.remote.message, /\d{8,}B/);
    },
  );

  await t.step("registerFunction twice is refused; submitToRegisteredFunction works", async () => {
    await using fx = new FuncXExecutor({ endpointId, client });
    const triple = (x: number) => 3 * x;
    const id = await fx.registerFunction(triple);
    await assert.rejects(() => fx.registerFunction(triple), TypeError);
    assert.equal(await fx.submitToRegisteredFunction(id, [5]), 15);
    assert.equal(await fx.submit(triple, 7), 21);
  });

  await t.step("map keeps order across chunks; asCompleted yields every future", async () => {
    await using fx = new FuncXExecutor({ endpointId, client, batchSize: 16 });
    const out: number[] = [];
    for await (const r of fx.map((x: number) => x * x, [1, 2, 3, 4, 5, 6, 7], { chunkSize: 3 })) {
      out.push(r);
    }
    assert.deepEqual(out, [1, 4, 9, 16, 25, 36, 49]);
    const futures = [300, 10, 150].map((ms) =>
      fx.submit(async (d: number) => {
        await new Promise((r) => setTimeout(r, d));
        return d;
      }, ms)
    );
    const seen: FuncXFuture<number>[] = [];
    for await (const { future, index } of FuncXExecutor.asCompleted(futures)) {
      assert.ok(future.done);
      assert.equal(future, futures[index]);
      seen.push(future);
    }
    assert.equal(seen.length, 3);
    assert.deepEqual(new Set(seen), new Set(futures));
  });

  await t.step("a cancelled unsent task never runs", async () => {
    const fx = new FuncXExecutor({ endpointId, client });
    const f = fx.submit((x: number) => x, 1);
    assert.equal(f.cancel(), true);
    await assert.rejects(() => Promise.resolve(f), TaskCancelledError);
    assert.equal(f.taskId, undefined);
    assert.equal(f.cancel(), false);
    await fx.shutdown();
    await fx.shutdown();
    assert.equal(fx.taskCountSubmitted, 0);
    assert.throws(() => fx.submit((x: number) => x, 2), /shut down/);
  });

  await t.step("cancelling a running task stops it on the endpoint", async () => {
    await using fx = new FuncXExecutor({ endpointId, client });
    const marker = join(await Deno.makeTempDir({ prefix: "funcx-cancel-" }), "ran");
    const f = fx.submit(async (path: string) => {
      await Deno.writeTextFile(`${path}.started`, "");
      await new Promise((r) => setTimeout(r, 4000));
      await Deno.writeTextFile(path, "ran");
      return "finished";
    }, marker);
    // Wait until the worker has started it.
    for (let i = 0; i < 600; i++) {
      if (await Deno.stat(`${marker}.started`).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(f.cancel(), true);
    await assert.rejects(() => Promise.resolve(f), TaskCancelledError);
    // The future settles at once; the service hears of the cancel just after.
    let task = await client.getTask(f.taskId!);
    for (let i = 0; i < 200 && task.pending; i++) {
      await new Promise((r) => setTimeout(r, 50));
      task = await client.getTask(f.taskId!);
    }
    assert.equal(task.status, "failed");
    assert.equal(task.error_code, "TaskCancelled");
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(await Deno.stat(marker).then(() => true, () => false), false, "it kept running");
  });

  await t.step("10,000 tasks through the executor all come back right", async () => {
    await using fx = new FuncXExecutor({ endpointId, client, batchSize: 1000 });
    const square = (i: number) => i * i;
    const futures = Array.from({ length: 10_000 }, (_, i) => fx.submit(square, i));
    const results = await Promise.all(futures);
    for (let i = 0; i < results.length; i++) assert.equal(results[i], i * i);
    assert.equal(fx.taskCountSubmitted, 10_000);
    assert.equal(new Set(futures.map((f) => f.taskId)).size, 10_000);
  });

  await t.step("two executors of one task group in one process both get every result", async () => {
    const taskGroupId = crypto.randomUUID();
    const a = new FuncXExecutor({ endpointId, client, taskGroupId, batchSize: 7 });
    const b = new FuncXExecutor({ endpointId, client, taskGroupId, batchSize: 5 });
    const fa = Array.from({ length: 60 }, (_, i) => a.submit((x: number) => x * 2, i));
    const fb = Array.from({ length: 60 }, (_, i) => b.submit((x: number) => -x, i));
    // A future left waiting would hang the step; bound it so the failure is a clear message.
    const all = Promise.all([Promise.all(fa), Promise.all(fb)]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("some futures never settled")), 60_000);
    });
    try {
      const [ra, rb] = await Promise.race([all, limit]);
      assert.deepEqual(ra, Array.from({ length: 60 }, (_, i) => i * 2));
      assert.deepEqual(rb, Array.from({ length: 60 }, (_, i) => -i));
    } finally {
      clearTimeout(timer);
      // Not `await using`: waiting on a future that never settles would hang the test.
      await Promise.all([a.shutdown({ wait: false }), b.shutdown({ wait: false })]);
    }
  });

  await t.step(
    "a deadline or an abort settles waiting futures; the task itself goes on",
    async () => {
      const slow = async (ms: number) => {
        await new Promise((r) => setTimeout(r, ms));
        return ms;
      };
      {
        await using fx = new FuncXExecutor({ endpointId, client, resultTimeoutMs: 300 });
        const f = fx.submit(slow, 3000);
        const err = await f.then(() => undefined, (e) => e);
        assert.ok(err instanceof ResultTimeoutError, String(err));
        assert.equal(err.taskId, f.taskId);
        if (f.taskId) {
          // Sent before the deadline: it runs to its end and its result is kept.
          let task = await client.getTask(f.taskId);
          for (let i = 0; i < 600 && task.pending; i++) {
            await new Promise((r) => setTimeout(r, 50));
            task = await client.getTask(f.taskId);
          }
          assert.equal(await client.getResult(f.taskId), 3000);
        }
      }
      const abort = new AbortController();
      const fx = new FuncXExecutor({ endpointId, client, signal: abort.signal });
      const f = fx.submit(slow, 3000);
      const quick = fx.submit((x: number) => x, 7);
      assert.equal(await quick, 7);
      abort.abort(new Error("user stopped waiting"));
      await assert.rejects(() => Promise.resolve(f), /user stopped waiting/);
      assert.throws(() => fx.submit((x: number) => x, 1), /shut down/);
      await fx.shutdown();
    },
  );

  await t.step("getBatchResult reports results, failures and unknown ids", async () => {
    const ok = await client.run(await client.registerFunction(() => "fine"), endpointId);
    const bad = await client.run(
      await client.registerFunction(() => {
        throw new Error("bad");
      }),
      endpointId,
    );
    const unknown = crypto.randomUUID();
    let r = await client.getBatchResult([ok, bad, unknown]);
    for (let i = 0; i < 200 && [...r.values()].some((x) => x.pending); i++) {
      await new Promise((res) => setTimeout(res, 50));
      r = await client.getBatchResult([ok, bad, unknown]);
    }
    assert.equal(r.get(ok)!.result, "fine");
    assert.ok(r.get(bad)!.error instanceof TaskExecutionFailed);
    assert.equal(r.get(unknown)!.status, "unknown");
    assert.equal((r.get(unknown)!.error as { codeName?: string }).codeName, "task_not_found");
  });

  await t.step("a ShellFunction runs a command line and returns its output", async () => {
    await using fx = new FuncXExecutor({ endpointId, client });
    const id = await client.registerShellFunction(new ShellFunction("echo {word}; exit {code}"));
    const r = await fx.submitToRegisteredFunction(id, [], {
      word: "hello",
      code: 3,
    }) as ShellResult;
    assert.equal(r.returncode, 3);
    assert.equal(r.stdout.trim(), "hello");
    assert.equal(r.cmd, "echo hello; exit 3");
    assert.equal((await client.whoami()).username, "dev");
  });

  await t.step("Batch and batchRun submit many tasks in one request", async () => {
    const fn = await client.registerFunction((a: number, b: number) => a * b);
    const batch = client.createBatch();
    for (let i = 0; i < 20; i++) batch.add(fn, endpointId, [i, 2]);
    assert.equal(batch.size, 20);
    const ids = await client.batchRun(batch);
    assert.equal(ids.length, 20);
    const small = client.createBatch({ maxBytes: 200 });
    assert.throws(() => {
      for (let i = 0; i < 10; i++) small.add(fn, endpointId, ["x".repeat(40)]);
    }, RangeError);
  });

  await t.step("cron style: one process submits and exits, another reattaches", async () => {
    const group = crypto.randomUUID();
    const submitted = await script(
      `import { FuncXExecutor } from "@funcx/sdk";
const fx = new FuncXExecutor({ endpointId: Deno.env.get("FUNCX_ENDPOINT_ID")!, taskGroupId: "${group}" });
const fs = [1, 2, 3].map((i) => fx.submit(async (x: number) => { await new Promise((r) => setTimeout(r, 300)); return x * 10; }, i));
await fx.shutdown({ wait: false });
console.log(fs.length);
Deno.exit(0);
`,
      env,
    );
    assert.equal(submitted.trim(), "3");
    const collected = await script(
      `import { FuncXExecutor } from "@funcx/sdk";
const fx = new FuncXExecutor({ endpointId: Deno.env.get("FUNCX_ENDPOINT_ID")!, taskGroupId: "${group}" });
const futures = await fx.reloadTasks();
console.log(JSON.stringify((await Promise.all(futures)).sort()));
`,
      env,
    );
    assert.deepEqual(JSON.parse(collected), [10, 20, 30]);
  });

  await t.step("a script exits by itself after its last result", async () => {
    const started = performance.timeOrigin + performance.now();
    const out = await script(
      `import { FuncXExecutor } from "@funcx/sdk";
const fx = new FuncXExecutor({ endpointId: Deno.env.get("FUNCX_ENDPOINT_ID")! });
const r = await Promise.all([1, 2, 3].map((i) => fx.submit((x: number) => x + 1, i)));
console.log(JSON.stringify({ r, at: performance.timeOrigin + performance.now() }));
`,
      env,
    );
    const exitedAt = performance.timeOrigin + performance.now();
    const { r, at } = JSON.parse(out);
    assert.deepEqual(r, [2, 3, 4]);
    // No timer or socket kept it alive: it ended on its own (the command has no kill timeout
    // short of 120 s). The gap is reported, not asserted against the machine's speed.
    console.log(
      `script exited ${(exitedAt - at).toFixed(0)} ms after its last result ` +
        `(${(exitedAt - started).toFixed(0)} ms in all)`,
    );
    assert.ok(exitedAt - at < 60_000);
  });
});
