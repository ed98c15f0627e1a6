import assert from "node:assert/strict";
import { validateConfig } from "./config.ts";
import { allPassed, checkClock, requiredCommands } from "./self_diagnostic.ts";

Deno.test("checkClock blames the clock only beyond what the Date header's second allows", () => {
  const date = new Date("2030-01-01T00:00:00Z");
  const t = date.getTime();
  // Stamped within the request: no skew, whatever the sub-second part.
  assert.equal(checkClock(date, t + 200, t + 900, 0).status, "pass");
  // The service's second ended 5 s before the request was sent: 4 s ahead of it.
  const ahead = checkClock(date, t + 5_000, t + 5_100, 2);
  assert.equal(ahead.status, "fail");
  assert.match(ahead.detail, /4 s ahead of the service's \(limit 2 s\)/);
  // The service's stamp is 60 s after the answer arrived: this host is behind.
  const behind = checkClock(date, t - 60_500, t - 60_000, 30);
  assert.match(behind.detail, /60 s behind/);
  assert.equal(checkClock(date, t - 60_500, t - 60_000, 90).status, "pass");
});

Deno.test("requiredCommands follows the provider, MPI mode and container runtime", () => {
  const programs = (engine: Record<string, unknown>) =>
    requiredCommands(validateConfig("c.yaml", { engine })).map((c) => c.program);
  assert.deepEqual(programs({}), []);
  assert.deepEqual(programs({ provider: { type: "slurm" } }), ["sbatch", "squeue", "scancel"]);
  assert.deepEqual(programs({ provider: { type: "gridengine" } }), ["qsub", "qstat", "qdel"]);
  assert.deepEqual(programs({ container_type: "podman" }), ["podman"]);
  assert.deepEqual(
    programs({ provider: { type: "slurm" }, mpi: { launcher: "mpiexec" } }),
    ["sbatch", "squeue", "scancel", "mpiexec"],
  );
});

Deno.test("allPassed is false as soon as one check failed", () => {
  const pass = { check: "disk", status: "pass", detail: "" } as const;
  const skip = { check: "tls", status: "skip", detail: "" } as const;
  assert.equal(allPassed([pass, skip]), true);
  assert.equal(allPassed([pass, { check: "clock", status: "fail", detail: "" }]), false);
});
