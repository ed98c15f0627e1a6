/**
 * The bundled worker (`worker_bundle.ts`): its cache key covers the whole module graph of
 * `worker_main.ts`, a real `deno bundle` makes it once per source version, and the bundle is a
 * working worker: run as a process, it says hello and runs a task.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { bundleWorker, WORKER_SOURCES } from "./worker_bundle.ts";
import { encodeFrame, type FromWorker, readFrames, type ToWorker } from "./frames.ts";
import { taskBuffer, valueOf } from "./_test_helpers.ts";

Deno.test("every local module of the worker lies in the directories its bundle's hash covers", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "info",
      "--json",
      `--config=${fileURLToPath(new URL("../../deno.json", import.meta.url))}`,
      fileURLToPath(new URL("./worker_main.ts", import.meta.url)),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success);
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: Array<{ specifier: string }>;
  };
  const local = info.modules.map((m) => m.specifier).filter((s) => s.startsWith("file:"));
  assert.ok(local.length > 10, `the graph has its modules (${local.length})`);
  const covered = (s: string) =>
    WORKER_SOURCES.some((u) =>
      u.href.endsWith("/")
        ? s.startsWith(u.href) && !s.slice(u.href.length).includes("/")
        : s === u.href
    );
  const outside = local.filter((s) => !covered(s));
  assert.deepEqual(outside, [], "a module outside would not change the bundle's hash");
});

Deno.test("the bundled worker is made once per source version and runs tasks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-bundle-" });
  try {
    const url = await bundleWorker(dir);
    const file = fileURLToPath(url);
    assert.match(file, /worker-[0-9a-f]{16}\.js$/);
    const made = (await Deno.stat(file)).mtime?.getTime();
    // The same sources: the same file, not made again; nothing half-written is left.
    assert.equal((await bundleWorker(dir)).href, url.href);
    assert.equal((await Deno.stat(file)).mtime?.getTime(), made);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, [file.split("/").pop()]);

    // Run it as a worker process: hello, then a task's result, then it exits when stdin ends.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--allow-all", file],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(encodeFrame(
      {
        type: "task",
        task_id: "t1",
        buffer: taskBuffer((a: number, b: number) => a * b, [6, 7]),
      } satisfies ToWorker,
    ));
    const seen: FromWorker[] = [];
    for await (const msg of readFrames<FromWorker>(child.stdout)) {
      seen.push(msg);
      if (msg.type === "result") break;
    }
    await writer.close();
    assert.equal((await child.status).code, 0);
    assert.equal(seen[0]?.type, "hello");
    const result = seen.find((m) => m.type === "result");
    assert.ok(result?.type === "result");
    assert.equal(result.result.task_id, "t1");
    assert.equal(valueOf(result.result), 42);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
