import { join } from "node:path";
import { descendants, taskBuffer } from "../endpoint/engine/_test_helpers.ts";
import { permissionFlags } from "../endpoint/engine/command.ts";
import { workerCommand } from "../endpoint/engine/worker_bundle.ts";
import { WorkerPool } from "../endpoint/engine/worker_pool.ts";
const v8 = Deno.env.get("WV8") ?? "--expose-gc";
const command = await workerCommand([...permissionFlags({}), `--v8-flags=${v8}`]);
const env = {
  ...Deno.env.toObject(),
  ...Object.fromEntries(
    (Deno.env.get("WENV") ?? "").split(" ").filter(Boolean).map((kv) => kv.split("=")),
  ),
};
const N = Number(Deno.args[0] ?? 20000);
const dir = await Deno.makeTempDir();
let done = 0;
const pool = await WorkerPool.start({
  workers: 1,
  command,
  env,
  logDir: join(dir, "l"),
  onResult: () => done++,
});
const pid = descendants()[0]!;
const rss = () =>
  (Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) / 1024).toFixed(
    1,
  );
const cpu = () => Number(Deno.readTextFileSync(`/proc/${pid}/schedstat`).split(" ")[0]) / 1e6;
const r0 = rss();
const c0 = cpu();
const buf = taskBuffer(() => null);
let sent = 0;
while (sent < N) {
  for (let i = 0; i < 200 && sent < N; i++) {
    pool.submit({ task_id: `t${sent++}`, buffer: buf, statuses: [] });
  }
  while (done < sent - 100) await new Promise((r) => setTimeout(r, 1));
}
while (done < N) await new Promise((r) => setTimeout(r, 1));
const c1 = cpu();
const r1 = rss();
await new Promise((r) => setTimeout(r, 3000));
console.log(
  JSON.stringify({
    v8,
    env: Deno.env.get("WENV") ?? "",
    start: r0,
    afterLoad: r1,
    after3s: rss(),
    mainUsPerTask: ((c1 - c0) * 1000 / N).toFixed(1),
  }),
);
await pool.close();
await Deno.remove(dir, { recursive: true });
