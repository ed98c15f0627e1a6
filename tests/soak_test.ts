/**
 * The soak (`bench/soak.ts`) for 3 minutes: mixed work at a steady rate against a real stack,
 * with reloads from other processes and an endpoint restart, sampled 12 times; its verdict must
 * be a pass (nothing lost, nothing growing, the store within its TTL) and its JSON and chart
 * written. The 60-minute run is `deno task soak --minutes 60`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { runSoak } from "../bench/soak.ts";

Deno.test({
  name: "soak: 3 minutes of mixed work lose nothing and grow nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const outDir = await Deno.makeTempDir({ prefix: "funcx-soak-out-" });
    try {
      const report = await runSoak({ minutes: 3, outDir });
      assert.deepEqual(report.problems, []);
      assert.ok(report.passed);
      assert.ok(report.samples.length >= 12, `${report.samples.length} samples`);
      assert.equal(report.endpointRestarts, 1);
      assert.ok(report.reloads.runs >= 4, `${report.reloads.runs} reloads`);
      for (const kind of ["noop", "sleep", "fail", "big", "cancel"]) {
        assert.ok((report.submitted[kind] ?? 0) > 0, `no ${kind} task`);
      }
      const json = JSON.parse(await Deno.readTextFile(`${outDir}/soak-3m.json`));
      assert.equal(json.passed, true);
      assert.match(await Deno.readTextFile(`${outDir}/soak-3m.svg`), /^<svg[^>]*>/);
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  },
});
