import assert from "node:assert/strict";
import { join } from "node:path";
import { TokenStore } from "./token_store.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const tokens = (accessToken: string, expiresAt = Date.now() + 60_000) => ({
  serviceAddress: "http://127.0.0.1:8000",
  accessToken,
  expiresAt,
  refreshToken: "r",
});

Deno.test("TokenStore json format keeps tokens in storage.json, mode 0600", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "funcx", "storage.db");
  assert.equal(await TokenStore.exists(path, { format: "json" }), false);
  const store = await TokenStore.open(path, { format: "json" });
  assert.equal(store.path, join(dir, "funcx", "storage.json"));
  assert.deepEqual(store.environments(), []);
  store.set("b", tokens("one"));
  store.set("a", tokens("two"));
  assert.deepEqual(store.environments(), ["a", "b"]);
  assert.equal(store.get("b")?.accessToken, "one");
  store.delete("b");
  assert.equal(store.get("b"), undefined);
  store.close();
  assert.equal(await TokenStore.exists(path, { format: "json" }), true);
  assert.equal((await Deno.stat(store.path)).mode! & 0o777, 0o600);
  assert.equal((await Deno.stat(join(dir, "funcx"))).mode! & 0o777, 0o700);
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  const again = await TokenStore.open(path, { format: "json" });
  assert.deepEqual(again.get("a"), tokens("two", again.get("a")!.expiresAt));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("TokenStore json format names a file that is not a token store", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "storage.json"), "[1, 2");
  await assert.rejects(
    TokenStore.open(join(dir, "storage.db"), { format: "json" }),
    /Cannot read the token store ".*storage\.json": it is not JSON/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("TokenStore json format: exclusive sections of two processes never interleave", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "storage.db");
  const store = await TokenStore.open(path, { format: "json" });
  store.set("count", tokens("0", 0));
  // A lock left by a process that has exited is taken over.
  const gone = new Deno.Command("true").spawn();
  await gone.status;
  await Deno.writeTextFile(`${store.path}.lock`, String(gone.pid));
  const script = join(dir, "bump.ts");
  await Deno.writeTextFile(
    script,
    `import { TokenStore } from "${join(ROOT, "sdk/token_store.ts")}";
const store = await TokenStore.open("${path}", { format: "json" });
for (let i = 0; i < 15; i++) {
  await store.exclusive(async () => {
    const n = store.get("count")!.expiresAt;
    await new Promise((r) => setTimeout(r, 2));
    store.set("count", { ...store.get("count")!, expiresAt: n + 1 });
  });
}
`,
  );
  const run = () =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "-A", `--config=${join(ROOT, "deno.json")}`, script],
      stdin: "null",
    }).output();
  const outs = await Promise.all([run(), run(), run()]);
  for (const o of outs) assert.ok(o.success, new TextDecoder().decode(o.stderr));
  assert.equal(store.get("count")?.expiresAt, 45);
  await assert.rejects(Deno.stat(`${store.path}.lock`), Deno.errors.NotFound);
  store.close();
  await Deno.remove(dir, { recursive: true });
});
