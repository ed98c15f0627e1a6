/**
 * The chaos suite: one run of every fault in `phases.ts` against real processes (a private
 * RabbitMQ node, the service, an endpoint started with the CLI, its manager and workers, and
 * separate processes attached to the task group), each phase a step that fails with what went
 * wrong, then the checks over the whole run. Sized for CI (600 tasks, a few minutes, most of it
 * the broker outage of more than a minute); `run.ts` is the same run by hand at any size.
 *
 * `FUNCX_CHAOS_TASKS` and `FUNCX_CHAOS_PHASES` (comma-separated) change the size and the phases.
 *
 * @module
 */
import { ChaosRun, type PhaseName, PHASES, reportLine } from "./chaos.ts";

const tasks = Number(Deno.env.get("FUNCX_CHAOS_TASKS") ?? 600);
const phases = (Deno.env.get("FUNCX_CHAOS_PHASES")?.split(",") ?? PHASES) as PhaseName[];

Deno.test({
  name: "chaos: every future settles with its task's real outcome through every fault",
  // The executor's stream and the harness's processes span the steps; the run closes them all.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await using run = await ChaosRun.start({ tasks, phases });
    for (const name of phases) {
      await t.step(name, async () => {
        const report = await run.phase(name);
        if (report.problems.length > 0) throw new Error(reportLine(report));
      });
    }
    await t.step("whole run", async () => {
      const report = await run.finish();
      if (report.problems.length > 0) throw new Error(reportLine(report));
    });
  },
});
