import { join } from "node:path";
import { permissionFlags } from "../endpoint/engine/command.ts";
import { workerCommand } from "../endpoint/engine/worker_bundle.ts";
import { engineCommand } from "../endpoint/engine/command.ts";
import { WorkerPool } from "../endpoint/engine/worker_pool.ts";
const n = Number(Deno.args[0] ?? 256);
const flags = [...permissionFlags({}), "--v8-flags=--expose-gc"];
const command = Deno.env.get("GRAPH") ? engineCommand("worker", flags) : await workerCommand(flags);
const dir = await Deno.makeTempDir();
const t0 = performance.now();
const pool = await WorkerPool.start({
  workers: n,
  command,
  logDir: join(dir, "l"),
  onResult: () => {},
  readyWorkers: WorkerPool.startWave,
  startConcurrency: Number(Deno.env.get("CONC") ?? WorkerPool.startWave),
});
const first = performance.now() - t0;
while (pool.readyCount < n) await new Promise((r) => setTimeout(r, 10));
console.log(
  JSON.stringify({
    graph: !!Deno.env.get("GRAPH"),
    conc: Deno.env.get("CONC") ?? WorkerPool.startWave,
    firstWaveMs: Math.round(first),
    allUpMs: Math.round(performance.now() - t0),
  }),
);
await pool.close();
await Deno.remove(dir, { recursive: true });
