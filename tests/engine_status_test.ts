/**
 * The worker count as it changes: the engine tells of each change (its start returns with the
 * first wave of workers, the others come up after), and the endpoint's status report, through
 * the service, follows without waiting for a heartbeat.
 */
import assert from "node:assert/strict";
import { createEngine } from "../endpoint/engine/mod.ts";
import { WorkerPool } from "../endpoint/engine/worker_pool.ts";
import { LOCAL_MANAGER_MODES, until } from "../endpoint/engine/_test_helpers.ts";
import { clientOf, startStack } from "./harness/stack.ts";
import { until as eventually } from "./harness/until.ts";

/** More workers than a manager waits for before it says it is ready. */
const WORKERS = WorkerPool.startWave + 4;

for (const mode of LOCAL_MANAGER_MODES) {
  Deno.test(`engine (${mode} manager): onWorkersChanged tells of the workers that come up after start`, async () => {
    const heard: number[] = [];
    // Changes before `createEngine` returns are not counted: the engine is not in hand yet.
    const started: { engine?: Awaited<ReturnType<typeof createEngine>> } = {};
    const engine = await createEngine({
      local_manager: mode,
      max_workers_per_node: WORKERS,
      cores_per_worker: 0.01,
    }, {
      graceS: 2,
      onWorkersChanged: () => {
        if (started.engine) heard.push(started.engine.status().total_workers);
      },
    });
    started.engine = engine;
    try {
      const atStart = engine.status().total_workers;
      assert.ok(atStart < WORKERS, `${atStart} workers up when start returned`);
      await until(() => heard.at(-1) === WORKERS, `a change to ${WORKERS} workers heard`);
      assert.equal(engine.status().total_workers, WORKERS);
    } finally {
      await engine.close();
    }
  });
}

Deno.test("the endpoint's status shows every worker once they are up, before any heartbeat", async () => {
  // Enough that some come up only after the endpoint has connected and sent its first report.
  const workers = WorkerPool.startWave + 16;
  await using stack = await startStack({
    workers,
    config: { heartbeat_period: 3600, engine: { cores_per_worker: 0.01 } },
  });
  const fx = clientOf(stack.service);
  await eventually(`the status report of ${workers} workers`, async () => {
    const state = (await fx.getEndpointStatus(stack.endpoint.endpointId)).logs[0] as
      | { total_workers?: number }
      | undefined;
    return state?.total_workers === workers;
  });
});
