/**
 * The chaos suite by hand, at any size: `deno run -A tests/chaos/run.ts --tasks 10000`.
 * Prints one line per phase and one for the whole run; exits 1 if any found a problem.
 *
 * Flags: `--tasks N` (default 600), `--phases a,b,...` (default all, in order: see `phases.ts`),
 * `--workers N` (2), `--task-ms N` (20), `--long-outage-s N` (65), `--cut-s N` (8),
 * `--settle-timeout-s N` (90), `--local-manager in_process|process` (in_process; `manager-kill`
 * needs process, and is left out of the default phases otherwise), `--echo` (copy every
 * process's log to stderr).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ChaosRun, type PhaseName, PHASES } from "./chaos.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "600" },
    phases: { type: "string" },
    "local-manager": { type: "string", default: "in_process" },
    workers: { type: "string", default: "2" },
    "task-ms": { type: "string", default: "20" },
    "long-outage-s": { type: "string", default: "65" },
    "cut-s": { type: "string", default: "8" },
    "settle-timeout-s": { type: "string", default: "90" },
    echo: { type: "boolean", default: false },
  },
});
const num = (flag: keyof typeof values) => {
  const n = Number(values[flag]);
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`Invalid --${flag} "${values[flag]}"`);
  return n;
};
const localManager = values["local-manager"];
if (localManager !== "in_process" && localManager !== "process") {
  throw new RangeError(`Invalid --local-manager "${localManager}": in_process or process`);
}
const phases = values.phases?.split(",").filter((p) => p !== "") as PhaseName[] | undefined ??
  PHASES.filter((p) => localManager === "process" || p !== "manager-kill");
const started = performance.now();
const run = await ChaosRun.start({
  tasks: num("tasks"),
  phases,
  workers: num("workers"),
  localManager,
  taskMs: num("task-ms"),
  longOutageMs: num("long-outage-s") * 1000,
  cutMs: num("cut-s") * 1000,
  settleTimeoutMs: num("settle-timeout-s") * 1000,
  echo: values.echo,
  log: (line) => console.log(line),
});
let failed = 0;
try {
  for (const name of run.options.phases) {
    if ((await run.phase(name)).problems.length > 0) failed++;
  }
  if ((await run.finish()).problems.length > 0) failed++;
} finally {
  await run.close();
}
const s = ((performance.now() - started) / 1000).toFixed(0);
console.log(`chaos: ${failed === 0 ? "passed" : `${failed} checks failed`} in ${s} s`);
Deno.exit(failed === 0 ? 0 : 1);
