import assert from "node:assert/strict";
import { ActorName, isActorName, isTaskState, isTerminalState, nowNs, TaskState } from "./mod.ts";

Deno.test("TaskState and ActorName hold funcX's wire strings", () => {
  assert.equal(Object.keys(TaskState).length, 11);
  assert.equal(TaskState.WAITING_FOR_EP, "waiting-for-ep");
  assert.equal(TaskState.EXECUTION_START, "execution-start");
  assert.equal(TaskState.RESULT_ENQUEUED, "result-enqueued");
  assert.deepEqual(Object.values(ActorName), [
    "worker",
    "manager",
    "interchange",
    "endpoint",
    "result-processor",
    "web-service",
  ]);
});

Deno.test("isTerminalState() accepts success and failed in any case, nothing else", () => {
  for (const s of ["success", "failed", "SUCCESS", "Failed"]) assert.ok(isTerminalState(s), s);
  for (const s of ["running", "waiting-for-ep", "result-received", "", "successful"]) {
    assert.ok(!isTerminalState(s), s);
  }
  assert.ok(!isTerminalState(undefined as unknown as string));
});

Deno.test("isTaskState() and isActorName() accept exactly the known strings", () => {
  for (const s of Object.values(TaskState)) assert.ok(isTaskState(s), s);
  for (const v of ["RUNNING", "done", "", null, 1, undefined, "worker"]) {
    assert.ok(!isTaskState(v), String(v));
  }
  for (const a of Object.values(ActorName)) assert.ok(isActorName(a), a);
  assert.ok(!isActorName("running"));
});

Deno.test("nowNs() is wall-clock nanoseconds, non-decreasing, sub-millisecond", () => {
  const wall = BigInt(Date.now()) * 1_000_000n;
  const t = nowNs();
  assert.equal(typeof t, "bigint");
  // Within a second of Date.now(), so it is epoch-based and in nanoseconds.
  const diff = t > wall ? t - wall : wall - t;
  assert.ok(diff < 1_000_000_000n, `nowNs() is ${diff} ns away from Date.now()`);
  let prev = nowNs();
  const seen = new Set<bigint>();
  for (let i = 0; i < 2000; i++) {
    const next = nowNs();
    assert.ok(next >= prev, "nowNs() went backwards");
    seen.add(next % 1_000_000n);
    prev = next;
  }
  // Sub-millisecond: not every reading is a whole millisecond.
  assert.ok([...seen].some((ns) => ns !== 0n));
});
