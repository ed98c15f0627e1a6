/**
 * Login through the SDK against a real service process: the device flow approved on the
 * service's login page, tokens in a 0600 token store, renewal before expiry (also by two
 * processes sharing the store at once), and logout that revokes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FuncxAPIError, FuncXClient, LoginManager } from "../mod.ts";
import { TokenStore } from "../sdk/token_store.ts";
import { api } from "./harness/http.ts";
import { startServiceOnly } from "./harness/service_only.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function approve(base: string, userCode: string): Promise<void> {
  const res = await fetch(`${base}/login`, {
    method: "POST",
    body: new URLSearchParams({
      user_code: userCode,
      username: "dana",
      password: "a fine password",
      decision: "approve",
    }),
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
}

Deno.test("LoginManager: device flow, token store, renewal, logout", async (t) => {
  // Access tokens live 62 s and are renewed 60 s early, so a token is due for renewal after 2 s.
  await using fx = await startServiceOnly({ args: ["--token-ttl", "62"] });
  const base = fx.service.address;
  await fx.admin(["user", "add", "dana", "--password-stdin"], "a fine password\n");
  const dir = await Deno.makeTempDir({ prefix: "funcx-login-" });
  const storePath = join(dir, "funcx", "storage.db");
  const manager = () =>
    new LoginManager({
      serviceAddress: base,
      storePath,
      onDeviceCode: (p) => void approve(base, p.userCode),
    });

  await t.step("without a login the client says how to log in", async () => {
    const lm = manager();
    assert.equal(await lm.accessToken(), undefined);
    const client = new FuncXClient({ serviceAddress: base, loginManager: lm });
    const err = await client.whoami().then(() => undefined, (e) => e);
    assert.ok(err instanceof FuncxAPIError);
    assert.equal(err.httpStatus, 401);
    assert.match(err.message, /Not logged in/);
    await lm.close();
  });

  let first = "";
  await t.step("login runs the device flow and stores the tokens 0600", async () => {
    const lm = manager();
    await lm.login();
    first = (await lm.accessToken())!;
    assert.ok(first);
    const client = new FuncXClient({ serviceAddress: base, loginManager: lm });
    assert.equal((await client.whoami()).username, "dana");
    assert.equal((await Deno.stat(storePath)).mode! & 0o777, 0o600);
    await lm.close();
  });

  await t.step("an expiring token is renewed with the refresh token", async () => {
    await new Promise((r) => setTimeout(r, 2500));
    const lm = manager();
    const renewed = (await lm.accessToken())!;
    assert.notEqual(renewed, first);
    assert.equal(
      (await api(base, "GET", "/v2/whoami", { token: renewed })).body["username"],
      "dana",
    );
    await lm.close();
  });

  await t.step("two processes renewing at once both end up logged in", async () => {
    await new Promise((r) => setTimeout(r, 2500));
    const script = join(dir, "renew.ts");
    await Deno.writeTextFile(
      script,
      `import { FuncXClient, LoginManager } from "${join(ROOT, "mod.ts")}";
const lm = new LoginManager({ serviceAddress: "${base}", storePath: "${storePath}" });
const c = new FuncXClient({ serviceAddress: "${base}", loginManager: lm });
console.log((await c.whoami()).username);
await lm.close();
`,
    );
    const run = () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--quiet", "-A", `--config=${join(ROOT, "deno.json")}`, script],
        stdin: "null",
      }).output();
    const outs = await Promise.all([run(), run(), run()]);
    for (const o of outs) {
      assert.ok(o.success, new TextDecoder().decode(o.stderr));
      assert.equal(new TextDecoder().decode(o.stdout).trim(), "dana");
    }
  });

  await t.step("a renewal the service cannot answer keeps the login", async () => {
    await new Promise((r) => setTimeout(r, 2500)); // the stored token is due for renewal
    const port = Number(new URL(base).port);
    await fx.service.process.stop();
    // Something answering 503 where the service was (a proxy in front of a service down).
    const down = Deno.serve(
      { hostname: "127.0.0.1", port, onListen: () => {} },
      () => new Response("maintenance", { status: 503 }),
    );
    try {
      const lm = manager();
      const err = await lm.accessToken().then(() => undefined, (e) => e);
      assert.ok(err instanceof FuncxAPIError, String(err));
      assert.equal(err.codeName, "login_renewal_failed");
      assert.match(err.message, /HTTP 503; the login is kept/);
      await lm.close();
    } finally {
      await down.shutdown();
    }
    await fx.restart();
    const lm = manager();
    const token = await lm.accessToken();
    assert.ok(token, "the kept login renews once the service is back");
    assert.equal((await api(base, "GET", "/v2/whoami", { token })).body["username"], "dana");
    await lm.close();
  });

  await t.step("logout revokes the tokens and empties the store", async () => {
    const lm = manager();
    const token = (await lm.accessToken())!;
    assert.equal(await lm.logout(), true);
    assert.equal((await api(base, "GET", "/v2/whoami", { token })).status, 401);
    assert.equal(await lm.accessToken(), undefined);
    assert.equal(await lm.logout(), false);
    await lm.close();
    const store = await TokenStore.open(storePath);
    assert.equal(store.get(base), undefined);
    store.close();
  });
  await Deno.remove(dir, { recursive: true });
});
