/**
 * The engine alone, in this process, with its local block's manager in this process
 * (`local_manager: in_process`) and as a subprocess (`process`), taking turns: no-op tasks per
 * second and CPU µs per task in this process (the daemon's side) and in its children (the
 * manager subprocess, if any, and the workers). Each figure is the median of `--repeat` runs,
 * with the range; a warning says when the load average shows other work.
 *
 * Usage: `deno run -A bench/engine_modes.ts [--tasks 20000] [--workers 2] [--repeat 3]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createEngine } from "../endpoint/engine/mod.ts";
import { taskBuffer } from "../endpoint/engine/_test_helpers.ts";
import { descendants, processJiffies } from "./_proc.ts";
import { loadWarning, showSpread, spread } from "./_repeat.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "20000" },
    workers: { type: "string", default: "2" },
    repeat: { type: "string", default: "3" },
  },
});
const [tasks, workers, repeat] = [values.tasks, values.workers, values.repeat].map(Number);
for (const [flag, n] of Object.entries({ tasks, workers, repeat })) {
  if (!Number.isInteger(n) || n! < 1) throw new RangeError(`Invalid --${flag}: ${n}`);
}

const MODES = ["in_process", "process"] as const;
type Run = { tasks_per_s: number; daemon_us: number; children_us: number };

async function once(mode: (typeof MODES)[number]): Promise<Run> {
  await using engine = await createEngine({
    local_manager: mode,
    max_workers_per_node: workers!,
    cores_per_worker: 0.01,
  });
  const noop = taskBuffer(() => null);
  await Promise.all(Array.from({ length: 500 }, (_, i) => engine.submit(`warm${i}`, noop)));
  const children = descendants(Deno.pid);
  const cpu = () => ({
    daemon: processJiffies(Deno.pid),
    children: children.reduce((n, p) => n + processJiffies(p), 0),
  });
  const before = cpu();
  const start = performance.now();
  await Promise.all(Array.from({ length: tasks! }, (_, i) => engine.submit(`t${i}`, noop)));
  const seconds = (performance.now() - start) / 1000;
  const after = cpu();
  const us = (k: "daemon" | "children") => Math.round((after[k] - before[k]) * 1e4 / tasks!);
  return {
    tasks_per_s: Math.round(tasks! / seconds),
    daemon_us: us("daemon"),
    children_us: us("children"),
  };
}

const warned = loadWarning();
if (warned) console.error(`WARNING: ${warned}`);
const runs: Record<string, Run[]> = { in_process: [], process: [] };
for (let i = 0; i < repeat!; i++) for (const mode of MODES) runs[mode]!.push(await once(mode));
console.log(
  `\nThe engine alone: ${tasks} no-op tasks, ${workers} workers; median of ${repeat} runs ` +
    "(range)\n",
);
console.log("| local_manager | tasks/s | CPU µs/task: daemon | manager + workers | all |");
console.log("|---|---|---|---|---|");
for (const mode of MODES) {
  const r = runs[mode]!;
  const s = (f: (x: Run) => number) => showSpread(spread(r.map(f)));
  console.log(
    `| ${mode} | ${s((x) => x.tasks_per_s)} | ${s((x) => x.daemon_us)} | ` +
      `${s((x) => x.children_us)} | ${s((x) => x.daemon_us + x.children_us)} |`,
  );
}
const after = loadWarning();
if (after) console.log(`\nWARNING: ${after}`);
