/**
 * Accounts and tokens against a real service process: client credentials, the device
 * authorization flow driven the way a terminal client and a person in a browser would, refresh
 * token rotation, revocation, and the per-client rate limit.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { api, envelopeCode } from "./harness/http.ts";
import { startServiceOnly } from "./harness/service_only.ts";

const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

for (const store of ["sqlite", "postgres"] as const) {
  Deno.test(
    `service auth (${store}): client credentials, device flow, refresh, revoke`,
    (t) => auth(t, store),
  );
}

async function auth(t: Deno.TestContext, store: "sqlite" | "postgres"): Promise<void> {
  await using fx = await startServiceOnly({ store });
  const base = fx.service.address;
  await fx.admin(["user", "add", "carol", "--password-stdin"], "correct horse battery\n");

  await t.step(
    "client credentials: a token for a good secret, invalid_client otherwise",
    async () => {
      const ok = await api(base, "POST", "/v2/oauth/token", {
        form: {
          grant_type: "client_credentials",
          client_id: fx.service.clientId,
          client_secret: fx.service.clientSecret,
        },
      });
      assert.equal(ok.status, 200);
      assert.equal(ok.body["token_type"], "Bearer");
      assert.equal(typeof ok.body["access_token"], "string");
      assert.equal(ok.body["refresh_token"], undefined);
      const bad = await api(base, "POST", "/v2/oauth/token", {
        form: {
          grant_type: "client_credentials",
          client_id: fx.service.clientId,
          client_secret: "wrong",
        },
      });
      assert.equal(bad.status, 401);
      assert.equal(bad.body["error"], "invalid_client");
      envelopeCode(bad);
      const grant = await api(base, "POST", "/v2/oauth/token", {
        form: { grant_type: "password" },
      });
      assert.equal(grant.body["error"], "unsupported_grant_type");
    },
  );

  await t.step("the database keeps only hashes of secrets and tokens", async () => {
    const text = await databaseText(fx.service.dbPath);
    assert.ok(text.includes("carol"), "the database files were not read");
    assert.ok(!text.includes(fx.service.clientSecret), "client secret stored in clear");
    assert.ok(!text.includes("correct horse battery"), "password stored in clear");
  });

  let refresh = "";
  let access = "";
  await t.step("device flow: pending, approve on the login page, tokens", async () => {
    const start = await api(base, "POST", "/v2/oauth/device", { form: {} });
    assert.equal(start.status, 200);
    const deviceCode = String(start.body["device_code"]);
    const userCode = String(start.body["user_code"]);
    assert.match(userCode, /^[A-Z]{4}-[A-Z]{4}$/);
    assert.equal(start.body["verification_uri"], `${base}/login`);
    assert.equal(typeof start.body["interval"], "number");

    const pending = await api(base, "POST", "/v2/oauth/token", {
      form: { grant_type: DEVICE_GRANT, device_code: deviceCode },
    });
    assert.equal(pending.status, 400);
    assert.equal(pending.body["error"], "authorization_pending");
    const fast = await api(base, "POST", "/v2/oauth/token", {
      form: { grant_type: DEVICE_GRANT, device_code: deviceCode },
    });
    assert.equal(fast.body["error"], "slow_down");

    const page = await fetch(String(start.body["verification_uri_complete"]));
    assert.equal(page.status, 200);
    assert.match(await page.text(), new RegExp(userCode));

    const wrong = await fetch(`${base}/login`, {
      method: "POST",
      body: new URLSearchParams({
        user_code: userCode,
        username: "carol",
        password: "not her password",
        decision: "approve",
      }),
    });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const right = await fetch(`${base}/login`, {
      method: "POST",
      body: new URLSearchParams({
        user_code: userCode.toLowerCase(),
        username: "carol",
        password: "correct horse battery",
        decision: "approve",
      }),
    });
    assert.equal(right.status, 200);
    assert.match(await right.text(), /Approved/);

    await new Promise((r) => setTimeout(r, 1100));
    const done = await api(base, "POST", "/v2/oauth/token", {
      form: { grant_type: DEVICE_GRANT, device_code: deviceCode },
    });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    access = String(done.body["access_token"]);
    refresh = String(done.body["refresh_token"]);
    const me = await api(base, "GET", "/v2/whoami", { token: access });
    assert.equal(me.body["username"], "carol");
    const reused = await api(base, "POST", "/v2/oauth/token", {
      form: { grant_type: DEVICE_GRANT, device_code: deviceCode },
    });
    assert.equal(reused.body["error"], "invalid_grant");
  });

  await t.step("device flow: a denied login is access_denied", async () => {
    const start = await api(base, "POST", "/v2/oauth/device", { form: {} });
    await (await fetch(`${base}/login`, {
      method: "POST",
      body: new URLSearchParams({
        user_code: String(start.body["user_code"]),
        username: "carol",
        password: "correct horse battery",
        decision: "deny",
      }),
    })).body?.cancel();
    const denied = await api(base, "POST", "/v2/oauth/token", {
      form: { grant_type: DEVICE_GRANT, device_code: String(start.body["device_code"]) },
    });
    assert.equal(denied.body["error"], "access_denied");
  });

  await t.step("refresh tokens rotate; the old one stops working", async () => {
    const renewed = await api(base, "POST", "/v2/oauth/token", {
      form: { grant_type: "refresh_token", refresh_token: refresh },
    });
    assert.equal(renewed.status, 200);
    assert.notEqual(renewed.body["refresh_token"], refresh);
    const me = await api(base, "GET", "/v2/whoami", {
      token: String(renewed.body["access_token"]),
    });
    assert.equal(me.body["username"], "carol");
    const old = await api(base, "POST", "/v2/oauth/token", {
      form: { grant_type: "refresh_token", refresh_token: refresh },
    });
    assert.equal(old.status, 400);
    assert.equal(old.body["error"], "invalid_grant");
  });

  await t.step("a revoked access token is refused", async () => {
    assert.equal((await api(base, "GET", "/v2/whoami", { token: access })).status, 200);
    const rev = await api(base, "POST", "/v2/oauth/revoke", { form: { token: access } });
    assert.equal(rev.status, 200);
    const after = await api(base, "GET", "/v2/whoami", { token: access });
    assert.equal(after.status, 401);
    assert.equal(envelopeCode(after), "unauthorized");
  });

  await t.step("user list shows the users", async () => {
    const out = await fx.admin(["user", "list"]);
    assert.match(out, /carol/);
    assert.match(out, /dev/);
  });
}

/** Everything a store holds, as text: its SQLite files, or a dump of its PostgreSQL tables. */
async function databaseText(location: string): Promise<string> {
  if (location.startsWith("postgres")) {
    const sql = postgres(location, { max: 1, onnotice: () => {} });
    try {
      let text = "";
      for (const table of ["users", "clients", "tokens", "device_codes"]) {
        text += JSON.stringify(await sql`SELECT * FROM ${sql(table)}`);
      }
      return text;
    } finally {
      await sql.end();
    }
  }
  // WAL mode: recent writes may still be in the -wal file, so read both.
  let text = "";
  for (const path of [location, `${location}-wal`]) {
    text += new TextDecoder("latin1").decode(
      await Deno.readFile(path).catch(() => new Uint8Array()),
    );
  }
  return text;
}

Deno.test("service rate limit: 429 rate_limited with Retry-After past the limit", async () => {
  await using fx = await startServiceOnly({ rateLimit: 3 });
  const base = fx.service.address;
  const token = await fx.token();
  const statuses: number[] = [];
  let limited: Awaited<ReturnType<typeof api>> | undefined;
  for (let i = 0; i < 5; i++) {
    const a = await api(base, "GET", "/v2/endpoints", { token });
    statuses.push(a.status);
    if (a.status === 429) limited ??= a;
  }
  assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
  assert.ok(limited, `no 429 in ${statuses}`);
  assert.equal(envelopeCode(limited), "rate_limited");
  const retry = Number(limited.headers.get("retry-after"));
  assert.ok(retry >= 1 && retry <= 10, `Retry-After ${retry}`);
  // Unauthenticated routes are not counted against a client.
  assert.equal((await api(base, "GET", "/v2/version")).status, 200);
});
