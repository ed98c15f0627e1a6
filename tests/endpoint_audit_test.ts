/**
 * The audit log and retries on system failure of an ordinary (single-user) endpoint, through the
 * real service, broker and endpoint processes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { serviceEnv } from "./_endpoint_helpers.ts";
import { startEndpoint } from "./harness/stack.ts";
import { waitForResult } from "./harness/wait.ts";
import { accountNameOf } from "../endpoint/identity_map.ts";
import type { AuditRecord } from "../endpoint/audit_log.ts";

/** First run: kills its own worker; the run after that returns `"second run"`. */
const dieOnce = async (marker: string) => {
  if (await Deno.stat(marker).then(() => true, () => false)) return "second run";
  await Deno.writeTextFile(marker, "");
  Deno.kill(Deno.pid, "SIGKILL");
  return "never";
};

Deno.test("endpoint: audit_log gets received, running and finished lines; a lost worker's task is retried", async () => {
  await using s = await serviceEnv();
  const ep = await startEndpoint({
    service: s.service,
    dir: s.dir,
    workers: 1,
    config: {
      audit_log: "logs/audit.log",
      engine: { max_retries_on_system_failure: 1 },
    },
  });
  await using _ep = { [Symbol.asyncDispose]: async () => void await ep.process.stop() };
  const fx = s.client;
  const ok = await fx.registerFunction((a: string) => a.length);
  const okTask = await fx.run(ok, ep.endpointId, { args: ["secret-argument"] });
  assert.equal(await waitForResult(fx, okTask), 15);
  const flaky = await fx.registerFunction(dieOnce);
  const marker = join(s.dir, "died-once");
  const flakyTask = await fx.run(flaky, ep.endpointId, { args: [marker] });
  assert.equal(await waitForResult(fx, flakyTask), "second run");

  const file = join(s.configDir, "default", "logs", "audit.log");
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
  const text = await Deno.readTextFile(file);
  assert.ok(!text.includes("secret-argument") && !text.includes("second run"));
  const lines = text.trim().split("\n").map((l) => JSON.parse(l) as AuditRecord);
  const me = await accountNameOf(Deno.uid()!);
  const shape = (taskId: string) =>
    lines.filter((l) => l.task_id === taskId).map((l) => [
      l.event,
      l.user,
      l.local_user,
      l.function_id,
      l.endpoint_id,
      l.outcome ?? null,
      l.attempts ?? null,
    ]);
  const row = (
    event: string,
    fn: string,
    outcome: string | null = null,
    n: number | null = null,
  ) => [event, "dev", me, fn, ep.endpointId, outcome, n];
  assert.deepEqual(shape(okTask), [
    row("received", ok),
    row("running", ok),
    row("finished", ok, "success"),
  ]);
  assert.deepEqual(shape(flakyTask), [
    row("received", flaky),
    row("running", flaky),
    row("running", flaky),
    row("finished", flaky, "success", 2),
  ]);
  assert.equal(lines.length, 7);
  // Times are in order within a task.
  const times = lines.filter((l) => l.task_id === flakyTask).map((l) => Date.parse(l.time));
  assert.deepEqual([...times].sort((a, b) => a - b), times);
});
