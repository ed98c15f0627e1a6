/**
 * The soak (`bench/soak.ts`) for 3 minutes: mixed work at a steady rate against a real stack,
 * with reloads from other processes and an endpoint restart, sampled 12 times; its verdict must
 * be a pass (nothing lost, nothing growing, the store within its TTL) and its JSON and chart
 * written. It runs as a process of its own, as `deno task soak` does, so that the memory and
 * descriptors it samples of itself (the SDK's process) are not those of the test runner, which
 * runs other test files beside it. The 60-minute run is `deno task soak --minutes 60`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { denoRunArgs } from "./harness/process.ts";
import type { SoakReport } from "../bench/soak.ts";

Deno.test("soak: 3 minutes of mixed work lose nothing and grow nothing", async () => {
  const outDir = await Deno.makeTempDir({ prefix: "funcx-soak-out-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: denoRunArgs("bench/soak.ts", ["--minutes", "3", "--out", outDir]),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const report = JSON.parse(await Deno.readTextFile(`${outDir}/soak-3m.json`)) as SoakReport;
    assert.deepEqual(report.problems, [], stdout);
    assert.ok(report.passed && out.success, stdout);
    assert.match(stdout, /^soak: passed$/m);
    assert.ok(report.samples.length >= 12, `${report.samples.length} samples`);
    assert.equal(report.endpointRestarts, 1);
    assert.ok(report.reloads.runs >= 4, `${report.reloads.runs} reloads`);
    for (const kind of ["noop", "sleep", "fail", "big", "cancel"]) {
      assert.ok((report.submitted[kind] ?? 0) > 0, `no ${kind} task`);
    }
    for (const role of ["service", "endpoint", "workers", "sdk"]) {
      assert.ok(report.samples.every((s) => (s.rssMiB[role] ?? 0) > 0), `no RSS of ${role}`);
    }
    assert.match(await Deno.readTextFile(`${outDir}/soak-3m.svg`), /^<svg[^>]*>/);
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});
