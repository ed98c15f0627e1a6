/**
 * `funcx-endpoint` without client credentials: it uses a login kept in the config dir's token
 * store (made by the device flow), says how to log in when there is none and no terminal, and
 * `logout` revokes the stored login at the service.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { LoginManager } from "../mod.ts";
import { serviceEnv } from "./_endpoint_helpers.ts";
import { api } from "./harness/http.ts";
import { addUser } from "./harness/sign_in.ts";

const NO_CLIENT = { FUNCX_SDK_CLIENT_ID: "", FUNCX_SDK_CLIENT_SECRET: "" };

Deno.test("funcx-endpoint uses a stored device-flow login and logs out", async (t) => {
  await using s = await serviceEnv();
  const base = s.service.address;
  await addUser(s.service.dbPath, "erin", "erin's password");

  await t.step("no login and no terminal: a clear message, exit 1", async () => {
    const r = await s.cli(["whoami"], NO_CLIENT);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Not logged in/);
    assert.match(r.stderr, /terminal/);
  });

  let token = "";
  await t.step("with a stored login, commands act as that user", async () => {
    const login = new LoginManager({
      serviceAddress: base,
      storePath: join(s.configDir, "storage.db"),
      onDeviceCode: async (p) => {
        const res = await fetch(`${base}/login`, {
          method: "POST",
          body: new URLSearchParams({
            user_code: p.userCode,
            username: "erin",
            password: "erin's password",
            decision: "approve",
          }),
        });
        await res.body?.cancel();
      },
    });
    await login.login();
    token = (await login.accessToken())!;
    await login.close();
    const r = await s.cli(["whoami"], NO_CLIENT);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /User:\s+erin/);
  });

  await t.step("logout revokes the stored login", async () => {
    const r = await s.cli(["logout"], NO_CLIENT);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Logged out of ${base}`));
    assert.equal((await api(base, "GET", "/v2/whoami", { token })).status, 401);
    const after = await s.cli(["whoami"], NO_CLIENT);
    assert.equal(after.code, 1);
  });
});
