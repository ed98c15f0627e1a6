/**
 * The compiled binary is the same program: its workers keep the endpoint config's sandbox
 * (permission set and `mem_per_worker`) although a `deno compile`d binary cannot start a process
 * with fewer permissions than it was compiled with. `deno compile` cannot fetch its runtime on
 * these machines, so the binary's code path runs with this Deno standing in for it
 * (`FUNCX_STANDALONE_STAND_IN`: the entry point with exactly the flags the binary is compiled
 * with); every engine process then starts as `<binary> __worker` (and `<binary> __manager` with
 * `local_manager: process`), as in the binary.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { STANDALONE_STAND_IN_ENV, standInCommand } from "../endpoint/engine/command.ts";
import { createEngine } from "../endpoint/engine/mod.ts";
import {
  errorOf,
  LOCAL_MANAGER_MODES,
  taskBuffer,
  valueOf,
} from "../endpoint/engine/_test_helpers.ts";
import { TaskExecutionFailed } from "../mod.ts";
import { waitForResult } from "./harness/wait.ts";
import { fastConfig, processGroup, serviceEnv, writeConfig } from "./_endpoint_helpers.ts";

const MODES = [
  {
    name: "deno run",
    env: undefined,
    worker: /endpoint\/engine\/\.bundle-worker_main-[0-9a-f]+\.js/,
  },
  {
    name: "compiled binary",
    env: JSON.stringify(standInCommand()),
    worker: /cli\/funcx_endpoint\.ts\0__worker/,
  },
] as const;

/** Runs `fn` with this process (and so the engine it starts) in `mode`. */
async function inMode<T>(mode: (typeof MODES)[number], fn: () => Promise<T>): Promise<T> {
  if (mode.env) Deno.env.set(STANDALONE_STAND_IN_ENV, mode.env);
  try {
    return await fn();
  } finally {
    Deno.env.delete(STANDALONE_STAND_IN_ENV);
  }
}

const cmdline = (pid: number) => Deno.readTextFileSync(`/proc/${pid}/cmdline`);

for (const mode of MODES) {
  for (const local_manager of LOCAL_MANAGER_MODES) {
    Deno.test(`${mode.name} (${local_manager} manager): a worker limited to read one folder reads it and nothing else`, async () => {
      const data = await Deno.makeTempDir({ prefix: "funcx-data-" });
      await Deno.writeTextFile(join(data, "input.txt"), "inside");
      const permissions = { all: false, read: [data], env: ["HOME"] };
      await inMode(mode, async () => {
        await using engine = await createEngine({
          local_manager,
          max_workers_per_node: 1,
          permissions,
        }, {
          graceS: 2,
        });
        const read = (path: string) => Deno.readTextFile(path);
        assert.equal(
          valueOf(await engine.submit("in", taskBuffer(read, [join(data, "input.txt")]))),
          "inside",
        );
        const outside = errorOf(await engine.submit("out", taskBuffer(read, ["/etc/hostname"])));
        assert.equal(outside.name, "NotCapable");
        assert.match(outside.message, /read access to "\/etc\/hostname"/);
        const write = errorOf(
          await engine.submit(
            "w",
            taskBuffer((p: string) => Deno.writeTextFile(p, "x"), [join(data, "new.txt")]),
          ),
        );
        assert.equal(write.name, "NotCapable");
        const env = errorOf(await engine.submit("e", taskBuffer(() => Deno.env.get("PATH"))));
        assert.equal(env.name, "NotCapable");
        assert.equal(
          typeof valueOf(await engine.submit("h", taskBuffer(() => Deno.env.get("HOME")))),
          "string",
        );
        const run = errorOf(
          await engine.submit("r", taskBuffer(() => new Deno.Command("true").output())),
        );
        assert.equal(run.name, "NotCapable");
        // The task ran down this mode's code path.
        const pid = valueOf(await engine.submit("p", taskBuffer(() => Deno.pid))) as number;
        assert.match(cmdline(pid), mode.worker);
      });
      await Deno.remove(data, { recursive: true });
    });

    Deno.test(`${mode.name} (${local_manager} manager): a worker over mem_per_worker is stopped and the task says why`, async () => {
      await inMode(mode, async () => {
        await using engine = await createEngine({
          local_manager,
          max_workers_per_node: 1,
          mem_per_worker: 0.15,
        }, {
          graceS: 2,
        });
        const hog = () => {
          const keep: number[][] = [];
          for (;;) keep.push(Array.from({ length: 1e6 }, (_, i) => i + 0.5));
        };
        const err = errorOf(await engine.submit("hog", taskBuffer(hog)));
        assert.equal(err.code, "WorkerLost");
        assert.match(err.message, /ran out of memory \(mem_per_worker limit 153 MiB\)/);
        // Memory outside V8's heap counts as well.
        const buffers = () => {
          const keep: Uint8Array[] = [];
          for (;;) keep.push(new Uint8Array(16 * 1024 * 1024).fill(1));
        };
        const native = errorOf(await engine.submit("native", taskBuffer(buffers)));
        assert.equal(native.code, "WorkerLost");
        assert.match(native.message, /ran out of memory \(mem_per_worker limit 153 MiB\)/);
        assert.equal(valueOf(await engine.submit("small", taskBuffer(() => 1 + 1))), 2);
      });
    });
  }
}

Deno.test("compiled binary: `funcx-endpoint start` runs the daemon as the binary and keeps the config's sandbox", async () => {
  await using s = await serviceEnv();
  const data = join(s.dir, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "input.txt"), "inside");
  const standIn = { [STANDALONE_STAND_IN_ENV]: JSON.stringify(standInCommand()) };
  assert.equal((await s.cli(["configure", "sealed"])).code, 0);
  await writeConfig(
    s.configDir,
    "sealed",
    fastConfig(`  permissions:\n    all: false\n    read: [${JSON.stringify(data)}]`),
  );
  const r = await s.cli(["start", "sealed"], standIn);
  assert.equal(r.code, 0, r.stderr);
  const endpointId = /registered ID: (\S+)/.exec(r.stdout)?.[1];
  assert.ok(endpointId, r.stdout);
  const daemonPid = Number(await Deno.readTextFile(join(s.configDir, "sealed", "daemon.pid")));
  assert.match(cmdline(daemonPid), /cli\/funcx_endpoint\.ts\0__daemon\0sealed/);

  const read = await s.client.registerFunction((p: string) => Deno.readTextFile(p));
  const run = async (path: string) =>
    await waitForResult(s.client, await s.client.run(read, endpointId, { args: [path] }));
  assert.equal(await run(join(data, "input.txt")), "inside");
  const err = await run("/etc/hostname").then(() => undefined, (e) => e);
  assert.ok(err instanceof TaskExecutionFailed, String(err));
  assert.equal(err.remote.name, "NotCapable");
  // Every engine process of the endpoint is the binary: its workers (the local block's manager
  // runs in the daemon).
  const members = processGroup(daemonPid).filter((p) => p !== daemonPid).map(cmdline);
  assert.ok(!members.some((c) => c.includes("\0__manager")), members.join("\n"));
  assert.ok(members.some((c) => c.includes("\0__worker")), members.join("\n"));
  assert.ok(members.every((c) => c.includes("cli/funcx_endpoint.ts\0__")), members.join("\n"));

  const stop = await s.cli(["stop", "sealed"], standIn);
  assert.equal(stop.code, 0, stop.stderr);
  assert.deepEqual(processGroup(daemonPid), []);
});
