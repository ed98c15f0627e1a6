/** Worker socket directories left behind by processes that died are swept; others stay. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sweepSocketDirs } from "./worker_process.ts";

Deno.test("sweepSocketDirs removes only the directories of processes no longer running", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "funcx-sweep-" });
  try {
    // A pid that ran and ended, and one that runs (a child sleeping until told to stop).
    const ended = new Deno.Command("true").spawn();
    await ended.status;
    const running = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      const names = {
        dead: `funcx-worker-${ended.pid}-abc`,
        live: `funcx-worker-${running.pid}-def`,
        own: `funcx-worker-${Deno.pid}-ghi`,
        other: "funcx-worker-xyz", // an older name without a pid: not ours to judge
        file: `funcx-worker-${ended.pid}-file`,
      };
      for (const [k, name] of Object.entries(names)) {
        if (k === "file") await Deno.writeTextFile(join(tmp, name), "");
        else await Deno.mkdir(join(tmp, name, "inner"), { recursive: true });
      }
      await sweepSocketDirs(tmp);
      const left = new Set<string>();
      for await (const e of Deno.readDir(tmp)) left.add(e.name);
      assert.deepEqual(
        [...left].sort(),
        [names.live, names.own, names.other, names.file].sort(),
        "only the dead process's directory went",
      );
    } finally {
      running.kill("SIGKILL");
      await running.status;
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
