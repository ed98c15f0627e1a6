/**
 * The SDK as npm users get it, under Node: `mod.ts` bundled by esbuild into one ES module (npm
 * dependencies left as imports, installed with npm at the versions `deno.lock` pins) and run by
 * this machine's `node` against the real service, broker and endpoint: submit, structured data,
 * a remote error, `map`, and a second process reattaching to a task group with `reloadTasks`.
 * The token store runs there too: on a Node without `node:sqlite` it is a JSON file, shared by
 * processes under its lock.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as esbuild from "esbuild";
import { startStack } from "./harness/stack.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

/** `node --version`, or undefined when there is no `node` on PATH. */
async function nodeVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("node", { args: ["--version"], stdin: "null" }).output();
    return out.success ? decode(out.stdout).trim() : undefined;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

const NODE = await nodeVersion();

/**
 * Bundles the SDK for Node 20 into `dir` (`sdk.mjs`, and `token_store.mjs` for the token store,
 * which `mod.ts` does not export); returns the npm packages the bundles import.
 */
async function bundle(dir: string): Promise<string[]> {
  try {
    const result = await esbuild.build({
      entryPoints: {
        sdk: join(ROOT, "mod.ts"),
        token_store: join(ROOT, "sdk/token_store.ts"),
      },
      outdir: dir,
      outExtension: { ".js": ".mjs" },
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      metafile: true,
      logLevel: "silent",
    });
    const packages = new Set<string>();
    for (const output of Object.values(result.metafile.outputs)) {
      for (const i of output.imports) {
        // A dynamic import is an optional peer (@opentelemetry/api): not installed, so the SDK
        // is shown to run without it.
        if (!i.external || i.path.startsWith("node:") || i.kind === "dynamic-import") continue;
        const parts = i.path.split("/");
        packages.add(i.path.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!);
      }
    }
    return [...packages].sort();
  } finally {
    await esbuild.stop();
  }
}

/** Installs npm packages into `dir` at the versions deno.lock resolves deno.json's imports to. */
async function install(dir: string, packages: string[]): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const lock = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.lock")));
  const pinned = packages.map((name) => {
    const specifier = config.imports[name];
    const resolved = lock.specifiers[specifier];
    assert.ok(resolved, `deno.lock has no version for ${name} (${specifier})`);
    return `${name}@${String(resolved).split("_")[0]}`;
  });
  await Deno.writeTextFile(join(dir, "package.json"), '{ "private": true, "type": "module" }\n');
  const out = await new Deno.Command("npm", {
    args: ["install", "--no-audit", "--no-fund", "--loglevel=error", ...pinned],
    cwd: dir,
    stdin: "null",
    signal: AbortSignal.timeout(180_000),
  }).output();
  assert.ok(out.success, `npm install ${pinned.join(" ")} failed: ${decode(out.stderr)}`);
}

/** Runs an ES module under node in `dir`; returns its stdout, or throws with its stderr. */
async function node(dir: string, source: string, env: Record<string, string> = {}) {
  const file = join(dir, `script_${crypto.randomUUID()}.mjs`);
  await Deno.writeTextFile(file, source);
  const out = await new Deno.Command("node", {
    args: [file],
    cwd: dir,
    env,
    stdin: "null",
    signal: AbortSignal.timeout(120_000),
  }).output();
  if (!out.success) throw new Error(`node ${file} failed (${out.code}): ${decode(out.stderr)}`);
  return decode(out.stdout);
}

/** Prints a JSON line and exits once it is written (stdout to a pipe is asynchronous in Node). */
const PRINT_AND_EXIT = `
function printAndExit(value) {
  process.stdout.write(JSON.stringify(value) + "\\n", () => process.exit(0));
}`;

Deno.test({
  name: "SDK bundled for npm under Node: submit, map, reloadTasks from a second process",
  ignore: NODE === undefined,
  async fn(t) {
    console.log(`node ${NODE}`);
    const dir = await Deno.makeTempDir({ prefix: "funcx-node-" });
    // The bundle and npm install run while the stack starts.
    const prepared = bundle(dir).then((packages) => install(dir, packages)).then(
      () => undefined,
      (err: unknown) => err,
    );
    await using stack = await startStack({ workers: 2 });
    const failed = await prepared;
    if (failed) throw failed;
    const env = { ...stack.service.env, FUNCX_ENDPOINT_ID: stack.endpoint.endpointId };
    const group = crypto.randomUUID();

    await t.step("one process submits, maps and leaves tasks in a task group", async () => {
      const out = await node(
        dir,
        `import { FuncXExecutor, TaskExecutionFailed } from "./sdk.mjs";
${PRINT_AND_EXIT}
const endpointId = process.env.FUNCX_ENDPOINT_ID;
const fx = new FuncXExecutor({ endpointId });
const sum = await fx.submit((a, b) => a + b, 40, 2);
const data = await fx.submit(
  (xs) => ({ doubled: xs.map((x) => x * 2), bytes: new Uint8Array([1, 2, 255]), big: 2n ** 70n,
    when: new Date(Date.UTC(2024, 0, 2)), ids: new Set(["a"]) }),
  [0.25, 1.5, Math.PI, -0],
);
const squares = [];
for await (const r of fx.map((n) => n * n, [1, 2, 3, 4])) squares.push(r);
const err = await fx.submit(function fails() { throw new RangeError("too far"); })
  .then(() => undefined, (e) => e);
await fx.shutdown();
const cron = new FuncXExecutor({ endpointId, taskGroupId: "${group}" });
const left = [5, 6, 7].map((i) =>
  cron.submit(async (x) => { await new Promise((r) => setTimeout(r, 300)); return x * 10; }, i)
);
await cron.shutdown({ wait: false });
printAndExit({
  node: process.version,
  sum,
  doubled: data.doubled.map(String),
  bytes: data.bytes instanceof Uint8Array ? [...data.bytes] : null,
  big: typeof data.big === "bigint" ? String(data.big) : null,
  when: data.when.toISOString(),
  ids: data.ids instanceof Set ? [...data.ids] : null,
  squares,
  error: err instanceof TaskExecutionFailed ? [err.remote.name, err.remote.message] : String(err),
  left: left.length,
});
`,
        env,
      );
      const r = JSON.parse(out);
      assert.equal(r.node, NODE);
      assert.equal(r.sum, 42);
      assert.deepEqual(r.doubled, ["0.5", "3", String(Math.PI * 2), "0"]);
      assert.deepEqual(r.bytes, [1, 2, 255]);
      assert.equal(r.big, String(2n ** 70n));
      assert.equal(r.when, "2024-01-02T00:00:00.000Z");
      assert.deepEqual(r.ids, ["a"]);
      assert.deepEqual(r.squares, [1, 4, 9, 16]);
      assert.deepEqual(r.error, ["RangeError", "too far"]);
      assert.equal(r.left, 3);
    });

    await t.step("a second process reattaches to the task group and collects", async () => {
      const out = await node(
        dir,
        `import { FuncXExecutor } from "./sdk.mjs";
${PRINT_AND_EXIT}
const fx = new FuncXExecutor({ endpointId: process.env.FUNCX_ENDPOINT_ID });
fx.taskGroupId = "${group}";
const futures = await fx.reloadTasks();
const results = await Promise.all(futures);
await fx.shutdown();
printAndExit({ ids: futures.map((f) => f.taskId).filter(Boolean).length, results });
`,
        env,
      );
      const r = JSON.parse(out);
      assert.equal(r.ids, 3);
      assert.deepEqual(r.results.sort(), [50, 60, 70]);
    });

    await t.step("the token store works there, shared by processes under its lock", async () => {
      const path = join(dir, "funcx", "storage.db");
      const script = `import { TokenStore, defaultTokenStoreFormat } from "./token_store.mjs";
${PRINT_AND_EXIT}
const store = await TokenStore.open(${JSON.stringify(path)});
if (!store.get("count")) {
  store.set("count", { serviceAddress: "http://127.0.0.1:1", accessToken: "a", expiresAt: 0,
    refreshToken: "r" });
}
for (let i = 0; i < 10; i++) {
  await store.exclusive(async () => {
    const t = store.get("count");
    await new Promise((r) => setTimeout(r, 2));
    store.set("count", { ...t, expiresAt: t.expiresAt + 1 });
  });
}
printAndExit({ format: await defaultTokenStoreFormat(), file: store.path });
`;
      const first = JSON.parse(await node(dir, script));
      const both = await Promise.all([node(dir, script), node(dir, script)]);
      const major = Number(NODE!.slice(1).split(".")[0]);
      // node:sqlite is there without a flag from Node 22.13 on; before, the JSON file.
      if (major < 22) assert.equal(first.format, "json");
      assert.equal(
        first.file,
        first.format === "json" ? join(dir, "funcx", "storage.json") : path,
      );
      for (const b of both) assert.deepEqual(JSON.parse(b), first);
      assert.equal((await Deno.stat(first.file)).mode! & 0o777, 0o600);
      const read = await node(
        dir,
        `import { TokenStore } from "./token_store.mjs";
${PRINT_AND_EXIT}
const store = await TokenStore.open(${JSON.stringify(path)});
printAndExit(store.get("count"));
`,
      );
      assert.equal(JSON.parse(read).expiresAt, 30);
    });
    await Deno.remove(dir, { recursive: true });
  },
});
