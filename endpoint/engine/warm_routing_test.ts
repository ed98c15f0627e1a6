import assert from "node:assert/strict";
import { HOLD, ManagerPicker, WarmKinds } from "./warm_routing.ts";

function manager(name: string, capacity: number, warm: string[] = [], load = 0) {
  const kinds = new WarmKinds();
  kinds.report(warm);
  return { name, capacity, inflight: new Set(Array.from({ length: load }, (_, i) => i)), kinds };
}

Deno.test("WarmKinds: reported images and images of tasks on their way both count", () => {
  const k = new WarmKinds();
  assert.ok(k.empty);
  k.sent("a");
  k.sent("a");
  assert.ok(k.has("a") && !k.empty);
  k.done("a");
  assert.ok(k.has("a"));
  k.done("a");
  assert.ok(!k.has("a") && k.empty);
  k.report(["b"]);
  assert.ok(k.has("b"));
  k.report([]);
  assert.ok(!k.has("b") && k.empty);
});

Deno.test("ManagerPicker: plain tasks take turns among managers with room", () => {
  const [a, b, c] = [manager("a", 1), manager("b", 1, [], 1), manager("c", 1)];
  const p = new ManagerPicker([a, b, c]);
  assert.equal(p.pick(undefined, 0, true), a);
  assert.equal(p.pick(undefined, 0, true), c);
  assert.equal(p.pick(undefined, 0, true), a);
  assert.equal(new ManagerPicker([b]).pick(undefined, 0, true), undefined);
  assert.equal(new ManagerPicker([b]).pick(undefined, 1, true), b);
});

Deno.test("ManagerPicker: a container task goes to a manager warm in its image", () => {
  const [cold, warm] = [manager("cold", 1), manager("warm", 1, ["img"])];
  const p = new ManagerPicker([cold, warm]);
  assert.equal(p.pick("img", 0, true), warm);
  // No manager is warm in another image: any with room, in turn.
  assert.equal(p.pick("other", 0, true), cold);
});

Deno.test("ManagerPicker: a full warm manager makes the task wait for its prefetch slot", () => {
  const [cold, warm] = [manager("cold", 1), manager("warm", 1, ["img"], 1)];
  const p = new ManagerPicker([cold, warm]);
  assert.equal(p.pick("img", 0, true), HOLD);
  assert.equal(p.pick("img", 10, false), warm);
  // Warm managers full even with prefetch: a cold one takes it rather than nobody.
  const full = manager("full", 1, ["img"], 11);
  assert.equal(new ManagerPicker([cold, full]).pick("img", 10, false), cold);
  // No room anywhere at all: undefined, not HOLD.
  assert.equal(new ManagerPicker([full]).pick("img", 0, true), undefined);
});

Deno.test("ManagerPicker: plain tasks keep away from managers with container workers", () => {
  const [warm, cold] = [manager("warm", 2, ["img"]), manager("cold", 2)];
  const p = new ManagerPicker([warm, cold]);
  assert.equal(p.pick(undefined, 0, true), cold);
  assert.equal(p.pick(undefined, 0, true), cold);
  // Only the warm one has room left: it takes the task.
  const busy = manager("busy", 1, [], 1);
  assert.equal(new ManagerPicker([warm, busy]).pick(undefined, 0, true), warm);
});

Deno.test("ManagerPicker: a task for a new image makes its manager warm for the next ones", () => {
  const [a, b] = [manager("a", 1), manager("b", 1)];
  const p = new ManagerPicker([a, b]);
  const first = p.pick("img", 0, true);
  assert.equal(first, a);
  a.inflight.add(99);
  a.kinds.sent("img");
  assert.equal(p.pick("img", 0, true), HOLD);
  assert.equal(p.pick("img", 10, false), a);
  assert.equal(p.pick(undefined, 0, true), b);
});
