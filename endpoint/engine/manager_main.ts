/**
 * Entry point of a manager process, started by a provider (a local subprocess, or a Slurm job)
 * through `engineCommand("manager")`. It takes its options as JSON in `FUNCX_MANAGER_OPTIONS`
 * and the endpoint's secret in `FUNCX_MANAGER_SECRET` (never on the command line, where `ps`
 * shows it), logs to stderr, and exits 0 when told to stop, 1 on failure.
 *
 * @module
 */
import { configure, getConsoleSink } from "@logtape/logtape";
import { Manager, type ManagerOptions, OPTIONS_ENV, SECRET_ENV } from "./manager.ts";

/** Runs a manager from the environment; returns the exit code. */
export async function managerMain(): Promise<number> {
  const secret = Deno.env.get(SECRET_ENV);
  const json = Deno.env.get(OPTIONS_ENV);
  if (!secret || !json) {
    console.error(`Cannot start a manager: ${SECRET_ENV} and ${OPTIONS_ENV} must be set`);
    return 2;
  }
  Deno.env.delete(SECRET_ENV); // workers inherit the environment; user code must not see it
  await configure({
    sinks: { console: getConsoleSink() },
    loggers: [
      { category: ["funcx"], sinks: ["console"], lowestLevel: "info" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  const options = JSON.parse(json) as ManagerOptions;
  // A multi-node block starts one manager per node from the same options (srun sets this).
  const suffix = Deno.env.get("FUNCX_MANAGER_ID_SUFFIX");
  if (suffix) options.manager_id += suffix;
  const ac = new AbortController();
  const onSignal = () => ac.abort();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    await Manager.run(options, secret, ac.signal);
    return 0;
  } catch (err) {
    console.error(`Manager "${options.manager_id}" failed: ${(err as Error).message}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

if (import.meta.main) Deno.exit(await managerMain());
