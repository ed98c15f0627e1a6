/**
 * The cluster-loss chaos phase in the suite (see `cluster_loss.ts`): a 3-node RabbitMQ cluster,
 * two service replicas on PostgreSQL, two endpoints and two SDK processes (one reloading its
 * task groups); one broker node is SIGKILLed and started again, a replica is SIGKILLed and
 * another node is stopped cleanly while the tasks flow. The full 10,000 tasks at 150/s (about
 * 100 s here, a third of it starting the cluster); `FUNCX_CLUSTER_LOSS_TASKS` changes the count,
 * and `deno run -A tests/chaos/cluster_loss.ts --tasks N` runs it by hand.
 *
 * @module
 */
import assert from "node:assert/strict";
import { clusterLossLine, runClusterLoss } from "./cluster_loss.ts";

Deno.test({
  name: "cluster loss: losing broker nodes and a service replica under load loses nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const tasks = Number(Deno.env.get("FUNCX_CLUSTER_LOSS_TASKS") ?? 10_000);
    const report = await runClusterLoss({ tasks, rate: 150 });
    console.error(clusterLossLine(report));
    assert.deepEqual(report.problems, [], clusterLossLine(report));
    assert.equal(report.accepted, tasks);
    assert.equal(report.falseFailures + report.phantoms + report.lost, 0);
    assert.equal(report.duplicated + report.waiting, 0);
    // The faults happened while the tasks flowed, in this order.
    const faults = report.timeline.filter((l) => /SIGKILLed|started again|stopped/.test(l));
    assert.equal(faults.length, 4, report.timeline.join("\n"));
    // And they hit the links: the endpoints and the surviving replica moved to another node.
    assert.ok(report.failovers.endpoints > 0, clusterLossLine(report));
    assert.ok(report.failovers.service > 0, clusterLossLine(report));
  },
});
