import assert from "node:assert/strict";
import { FuncXClient, resultValue } from "./client.ts";
import { TaskExecutionFailed } from "./errors.ts";
import { FuncXExecutor } from "./executor.ts";
import { serialize, serializeData } from "./protocol/mod.ts";

/** A client for an address nobody listens on: these tests never send a request. */
const client = new FuncXClient({ serviceAddress: "http://127.0.0.1:9", accessToken: "unused" });

Deno.test("FuncXExecutor.taskGroupId takes a UUID by assignment and refuses anything else", () => {
  const fx = new FuncXExecutor({ endpointId: crypto.randomUUID(), client });
  assert.match(fx.taskGroupId, /^[0-9a-f-]{36}$/);
  const group = crypto.randomUUID();
  fx.taskGroupId = group;
  assert.equal(fx.taskGroupId, group);
  fx.taskGroupId = group.toUpperCase();
  assert.equal(fx.taskGroupId, group, "kept in the service's spelling");
  for (const bad of ["", "not-a-uuid", `${group}x`, 42, undefined]) {
    assert.throws(() => (fx.taskGroupId = bad as string), TypeError, String(bad));
  }
  assert.equal(fx.taskGroupId, group, "a refused value changes nothing");
  assert.throws(
    () => new FuncXExecutor({ endpointId: crypto.randomUUID(), client, taskGroupId: "g1" }),
    TypeError,
  );
});

Deno.test("FuncXExecutor refuses a missing endpointId and bad numbers when built", () => {
  assert.throws(() => new FuncXExecutor({ endpointId: "", client }), /Invalid endpointId/);
  const endpointId = crypto.randomUUID();
  assert.throws(() => new FuncXExecutor({ endpointId, client, batchSize: 0 }), RangeError);
  assert.throws(() => new FuncXExecutor({ endpointId, client, resultTimeoutMs: -1 }), RangeError);
});

Deno.test("resultValue() reads data, and fails a task whose result is a function", () => {
  assert.deepEqual(resultValue("t1", serializeData([1n, "x"])), [1n, "x"]);
  const err = (() => {
    try {
      resultValue("t1", serialize(() => 1));
    } catch (e) {
      return e;
    }
    assert.fail("a function passed for a result");
  })();
  assert.ok(err instanceof TaskExecutionFailed, String(err));
  assert.equal(err.taskId, "t1");
  assert.equal(err.remote.name, "SerializationError");
});
