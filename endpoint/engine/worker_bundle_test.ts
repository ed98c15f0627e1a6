import assert from "node:assert/strict";
import { join } from "node:path";
import type { ResultMessage } from "../../sdk/protocol/mod.ts";
import { descendants, taskBuffer, until, valueOf } from "./_test_helpers.ts";
import { permissionFlags } from "./command.ts";
import {
  BUNDLE_PREFIX,
  bundleFor,
  type BundleSource,
  STALE_MS,
  WORKER_BUNDLE_SOURCE,
  workerCommand,
} from "./worker_bundle.ts";
import { WorkerPool } from "./worker_pool.ts";

/** A two-module program in a temporary directory, with the project's config. */
async function program(dir: string, word: string): Promise<BundleSource> {
  await Deno.writeTextFile(
    join(dir, "dep.ts"),
    `export const word: string = ${JSON.stringify(word)};\n`,
  );
  await Deno.writeTextFile(
    join(dir, "entry.ts"),
    `import { word } from "./dep.ts";\nconsole.log(word, import.meta.url);\n`,
  );
  const url = (name: string) => new URL(`file://${join(dir, name)}`);
  return {
    entry: url("entry.ts"),
    roots: [url("")],
    extra: [],
    config: WORKER_BUNDLE_SOURCE.config,
  };
}

async function runJs(path: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-config", path],
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

function bundlesIn(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(BUNDLE_PREFIX))
    .sort();
}

Deno.test("bundleFor writes one file next to the entry, reuses it, makes a new one when a source changes, and removes those unused for an hour", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-bundle-test-" });
  try {
    const source = await program(dir, "first");
    const path = await bundleFor(source);
    assert.ok(path, "a bundle was made");
    assert.equal(path.slice(0, path.lastIndexOf("/")), dir);
    assert.match(path, /\/\.bundle-entry-[0-9a-f]{16}\.js$/);
    const [word, url] = (await runJs(path)).split(" ");
    assert.equal(word, "first");
    // It runs as a file beside the entry: what it finds relative to itself is where it was.
    assert.equal(url, `file://${path}`);
    const made = (await Deno.stat(path)).birthtime?.getTime();
    const ino = (await Deno.stat(path)).ino;

    assert.equal(await bundleFor(source), path, "the same sources give the same bundle");
    assert.equal((await Deno.stat(path)).ino, ino, "and it is not made again");
    assert.equal((await Deno.stat(path)).birthtime?.getTime(), made);

    // A change of size and modification time in a module of the graph.
    await new Promise((r) => setTimeout(r, 20));
    await program(dir, "second, longer");
    const next = await bundleFor(source);
    assert.ok(next && next !== path, "a changed source gives a new bundle");
    assert.equal((await runJs(next)).split(" ")[0], "second,");
    // The old one stays while a daemon of the old sources may use it, and goes once unused.
    assert.deepEqual(bundlesIn(dir).length, 2);
    const longAgo = new Date(Date.now() - STALE_MS - 60_000);
    await Deno.utime(path, longAgo, longAgo);
    await program(dir, "third, longer still");
    const third = await bundleFor(source);
    assert.ok(third);
    assert.deepEqual(bundlesIn(dir), [next, third].map((p) => p.slice(dir.length + 1)).sort());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bundleFor gives undefined, and leaves nothing behind, when deno bundle fails", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-bundle-test-" });
  try {
    const source = await program(dir, "x");
    await Deno.writeTextFile(join(dir, "dep.ts"), "export const word = ;\n");
    assert.equal(await bundleFor(source), undefined);
    assert.deepEqual(bundlesIn(dir), []);
    // Mended, the next call makes it: a failure is not remembered.
    await program(dir, "mended");
    const path = await bundleFor(source);
    assert.ok(path);
    assert.equal((await runJs(path)).split(" ")[0], "mended");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every local module of the worker's graph lies under the roots its bundle's fingerprint covers", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "info",
      "--json",
      `--config=${WORKER_BUNDLE_SOURCE.config.pathname}`,
      WORKER_BUNDLE_SOURCE.entry.href,
    ],
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string }[];
  };
  const local = info.modules.map((m) => m.specifier).filter((s) => s.startsWith("file:"));
  assert.ok(local.length > 10, `${local.length} local modules`);
  for (const s of local) {
    assert.ok(WORKER_BUNDLE_SOURCE.roots.some((r) => s.startsWith(r.href)), `${s} is not covered`);
  }
  // And none of them is npm or node: code once bundled (each would start Node compatibility).
  const path = await bundleFor();
  assert.ok(path, "the worker's bundle is made");
  const text = await Deno.readTextFile(path);
  assert.doesNotMatch(text, /^import .* from "(node|npm):/m);
});

Deno.test("a worker started from its bundle runs tasks, and runs as that file without the config", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-bundle-test-" });
  const results: ResultMessage[] = [];
  const command = await workerCommand(permissionFlags({}));
  assert.ok(command.includes("--no-config"), command.join(" "));
  assert.match(command.at(-1)!, /\/endpoint\/engine\/\.bundle-worker_main-[0-9a-f]{16}\.js$/);
  const marker = crypto.randomUUID();
  const pool = await WorkerPool.start({
    workers: 1,
    command,
    logDir: join(dir, "logs"),
    onResult: (r) => results.push(r),
    env: { ...Deno.env.toObject(), FUNCX_BUNDLE_TEST: marker },
  });
  try {
    pool.submit({
      task_id: "a",
      buffer: taskBuffer((a: number, b: number) => a * b, [6, 7]),
      statuses: [],
    });
    pool.submit({ task_id: "b", buffer: taskBuffer(() => Deno.pid), statuses: [] });
    await until(() => results.length === 2, "both results");
    assert.equal(valueOf(results.find((r) => r.task_id === "a")!), 42);
    const pid = valueOf(results.find((r) => r.task_id === "b")!) as number;
    assert.ok(descendants().includes(pid));
    const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    assert.equal(argv.at(-2), command.at(-1), "the worker runs the bundle");
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});
