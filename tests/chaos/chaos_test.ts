/**
 * The chaos suite: one run of every fault in `phases.ts` against real processes (a private
 * RabbitMQ node, the service, an endpoint started with the CLI, its workers (and, with
 * `local_manager: process`, its manager process), and separate processes attached to the task
 * group), each phase a step that fails with what went wrong, then the checks over the whole run.
 * The full run uses the default (the manager inside the daemon); a shorter run with a manager
 * subprocess covers the phases that kill processes (workers, the manager, the daemon). Sized for
 * CI (600 tasks, a few minutes, most of it the broker outage of more than a minute); `run.ts` is
 * the same run by hand at any size.
 *
 * `FUNCX_CHAOS_TASKS` and `FUNCX_CHAOS_PHASES` (comma-separated) change the size and the phases
 * (`manager-kill` is left out of the in-process run); `FUNCX_CHAOS_LOCAL_MANAGER` (`in_process`
 * or `process`) runs one mode only.
 *
 * @module
 */
import { ChaosRun, type PhaseName, PHASES, reportLine } from "./chaos.ts";

const tasks = Number(Deno.env.get("FUNCX_CHAOS_TASKS") ?? 600);
const chosen = Deno.env.get("FUNCX_CHAOS_PHASES")?.split(",") as PhaseName[] | undefined;
const only = Deno.env.get("FUNCX_CHAOS_LOCAL_MANAGER");

const RUNS = [
  {
    localManager: "in_process",
    phases: (chosen ?? PHASES).filter((p) => p !== "manager-kill"),
  },
  {
    localManager: "process",
    phases: chosen ?? ["baseline", "worker-kill", "manager-kill", "daemon-kill"],
  },
] as const satisfies readonly { localManager: string; phases: readonly PhaseName[] }[];

for (const { localManager, phases } of RUNS) {
  Deno.test({
    name: `chaos (${localManager} manager): every future settles with its task's real outcome ` +
      "through every fault",
    ignore: (only !== undefined && only !== localManager) || phases.length === 0,
    // The executor's stream and the harness's processes span the steps; the run closes them all.
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      await using run = await ChaosRun.start({ tasks, phases, localManager });
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
}
