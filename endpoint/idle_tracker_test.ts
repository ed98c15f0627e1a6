import assert from "node:assert/strict";
import { IdleTracker } from "./idle_tracker.ts";

Deno.test("IdleTracker stops after soft idle beats once work is done, or hard ones anyway", () => {
  const soft = new IdleTracker(2, 10);
  assert.equal(soft.beat(0, 0, 0), undefined);
  assert.equal(soft.beat(3, 3, 0), undefined); // work moved
  assert.equal(soft.beat(3, 3, 0), undefined);
  assert.match(soft.beat(3, 3, 0)!, /after its work was done/);
  const busy = new IdleTracker(1, 10);
  assert.equal(busy.beat(3, 2, 1), undefined);
  assert.equal(busy.beat(3, 2, 1), undefined); // a task still out: never idle
  const hard = new IdleTracker(0, 2);
  assert.equal(hard.beat(0, 0, 0), undefined);
  assert.equal(hard.beat(0, 0, 0), undefined);
  assert.match(hard.beat(0, 0, 0)!, /idle for 3 heartbeats/);
});
