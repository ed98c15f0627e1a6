/**
 * Guessing is slowed and seen, against real `funcx-service` processes with short locks (3
 * failures, 2 s): the sign-in form and `POST /v2/oauth/token` answer the N-th wrong secret with
 * 429 and `Retry-After`, refuse even the right one until the lock ends, leave other accounts
 * alone, lock a client address that guesses across accounts, log every failed and refused
 * attempt with the address, and (on PostgreSQL) hold the lock across two replicas, where a
 * session started on one is ended on both by signing out on the other. The forms' CSRF defences
 * are checked on the way.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { api } from "./harness/http.ts";
import { testDatabase } from "./harness/postgres.ts";
import { addUser, csrfOf, Visitor } from "./harness/sign_in.ts";
import {
  createVhost,
  deleteVhost,
  type ServiceHandle,
  sharedBroker,
  startService,
} from "./harness/stack.ts";
import { until } from "./harness/until.ts";

const LOCK_S = 2;
const ENV = {
  FUNCX_SERVICE_SIGN_IN_MAX_FAILURES: "3",
  FUNCX_SERVICE_SIGN_IN_MAX_FAILURES_PER_ADDRESS: "9",
  FUNCX_SERVICE_SIGN_IN_LOCK: String(LOCK_S),
  FUNCX_SERVICE_SIGN_IN_WINDOW: "600",
  FUNCX_SERVICE_SIGN_IN_DELAY_MS: "20",
  FUNCX_SERVICE_SIGN_IN_MAX_DELAY_MS: "80",
};

/** The same settings as `serve` flags. */
const FLAGS = [
  "--sign-in-max-failures",
  "3",
  "--sign-in-max-failures-per-address",
  "9",
  "--sign-in-lock",
  String(LOCK_S),
  "--sign-in-window",
  "600",
  "--sign-in-delay-ms",
  "20",
  "--sign-in-max-delay-ms",
  "80",
];

/** One sign-in form post, as a fresh browser would send it. */
async function attempt(base: string, username: string, password: string) {
  const { res, text } = await new Visitor(base).signIn(username, password);
  return { status: res.status, retryAfter: res.headers.get("retry-after"), text };
}

async function token(base: string, clientId: string, clientSecret: string) {
  return await api(base, "POST", "/v2/oauth/token", {
    form: { grant_type: "client_credentials", client_id: clientId, client_secret: clientSecret },
  });
}

async function withService(
  database: (dir: string) => Promise<{ url: string; drop?: () => Promise<void> }>,
  fn: (s: ServiceHandle, ctx: { dir: string; amqpUrl: string; database: string }) => Promise<void>,
  settings: "env" | "flags" = "env",
) {
  const broker = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-throttle-" });
  const vhost = `thr-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(broker, vhost);
  const db = await database(dir);
  const service = await startService({
    dir,
    amqpUrl,
    broker,
    database: db.url,
    ...(settings === "env" ? { env: ENV } : { args: FLAGS }),
  });
  try {
    await fn(service, { dir, amqpUrl, database: db.url });
  } finally {
    await service.process.stop();
    await deleteVhost(broker, vhost).catch(() => {});
    await db.drop?.().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("sign-in throttling: per account and address, 429 with Retry-After, logged", async (t) => {
  await withService((dir) => Promise.resolve({ url: join(dir, "service.db") }), async (s) => {
    const base = s.address;
    await addUser(s.dbPath, "carol", "carol's password");
    await addUser(s.dbPath, "dave", "dave's password");

    await t.step(
      "the 3rd wrong password is 429 with Retry-After; so is the right one",
      async () => {
        assert.equal((await attempt(base, "carol", "guess 1")).status, 401);
        assert.equal((await attempt(base, "carol", "guess 2")).status, 401);
        const third = await attempt(base, "carol", "guess 3");
        assert.equal(third.status, 429);
        assert.ok(Number(third.retryAfter) >= 1 && Number(third.retryAfter) <= LOCK_S);
        assert.match(third.text, /Too many failed sign-ins/);
        const right = await attempt(base, "carol", "carol's password");
        assert.equal(right.status, 429, "the right password got in during the lock");
        assert.ok(Number(right.retryAfter) >= 1);
      },
    );

    await t.step("another account is unaffected", async () => {
      const dave = await attempt(base, "dave", "dave's password");
      assert.equal(dave.status, 303);
      assert.equal((await attempt(base, "dave", "wrong")).status, 401);
    });

    await t.step("the right password works once the lock ends, not before", async () => {
      const lockedAt = Date.now();
      let refused = 0;
      const ok = await until(
        "carol's lock to end",
        async () => {
          const a = await attempt(base, "carol", "carol's password");
          if (a.status === 429) refused++;
          return a.status === 429 ? false : a;
        },
        10_000,
        100,
      );
      assert.equal(ok.status, 303);
      assert.ok(refused >= 1, "never refused while locked");
      assert.ok(Date.now() - lockedAt <= (LOCK_S + 3) * 1000, "locked for longer than the lock");
      // Her success cleared her count: two more wrong guesses are 401, not 429.
      assert.equal((await attempt(base, "carol", "again 1")).status, 401);
      assert.equal((await attempt(base, "carol", "again 2")).status, 401);
    });

    await t.step("an address guessing across accounts is locked", async () => {
      // So far this address failed 6 times (carol 3 + 2, dave 1); the 9th failure locks it.
      assert.equal((await attempt(base, "erin", "x")).status, 401); // 7
      assert.equal((await attempt(base, "frank", "x")).status, 401); // 8
      const ninth = await attempt(base, "gina", "x");
      assert.equal(ninth.status, 429);
      const dave = await attempt(base, "dave", "dave's password");
      assert.equal(dave.status, 429, "a locked address could still sign in");
      await until(
        "the address lock to end",
        async () => (await attempt(base, "dave", "dave's password")).status === 303,
        10_000,
        100,
      );
    });

    await t.step("every failed and refused attempt is logged with the address", async () => {
      const log = await s.process.log();
      assert.match(log, /Failed sign-in to user "carol" from "127\.0\.0\.1"/);
      assert.match(log, /Locked sign-in to user "carol" from "127\.0\.0\.1"/);
      assert.match(log, /Refused sign-in to user "carol" from "127\.0\.0\.1"/);
      assert.match(log, /Failed sign-in to user "gina" from "127\.0\.0\.1"/);
    });

    await t.step("a form without its token, or from another site, is 403", async () => {
      const v = new Visitor(base);
      const form = await v.get("/login");
      const noToken = await v.post("/login", { username: "dave", password: "dave's password" });
      assert.equal(noToken.res.status, 403);
      const foreign = await v.post(
        "/login",
        { csrf: csrfOf(form.text), username: "dave", password: "dave's password" },
        { origin: "http://evil.example" },
      );
      assert.equal(foreign.res.status, 403);
      const crossSite = await v.post(
        "/login",
        { csrf: csrfOf(form.text), username: "dave", password: "dave's password" },
        { "sec-fetch-site": "cross-site" },
      );
      assert.equal(crossSite.res.status, 403);
      const good = await v.post("/login", {
        csrf: csrfOf(form.text),
        username: "dave",
        password: "dave's password",
      });
      assert.equal(good.res.status, 303);
      assert.ok(v.cookies.has("funcx_session"), "no session cookie");
      const setCookie = good.res.headers.getSetCookie().join("\n");
      assert.match(setCookie, /HttpOnly/);
      assert.match(setCookie, /SameSite=Lax/);
      // Signing out needs the session's token too.
      const home = await v.get("/");
      assert.equal(home.res.status, 200);
      assert.equal((await v.post("/logout", { csrf: "forged" })).res.status, 403);
      assert.equal((await v.get("/")).res.status, 200, "a forged sign-out ended the session");
    });
  });
});

Deno.test("client-secret throttling on POST /v2/oauth/token (limits set by serve flags)", async () => {
  await withService((dir) => Promise.resolve({ url: join(dir, "service.db") }), async (s) => {
    const base = s.address;
    const other = await addUser(s.dbPath, "olive", "olive's password");
    // Scripts sharing one client ask for tokens many at a time: that is no guessing.
    const burst = await Promise.all(
      Array.from({ length: 12 }, () => token(base, s.clientId, s.clientSecret)),
    );
    assert.deepEqual(burst.map((r) => r.status), Array(12).fill(200));
    assert.equal((await token(base, s.clientId, "wrong 1")).status, 401);
    assert.equal((await token(base, s.clientId, "wrong 2")).status, 401);
    const third = await token(base, s.clientId, "wrong 3");
    assert.equal(third.status, 429);
    assert.equal(third.body.code, "too_many_attempts");
    assert.ok(Number(third.headers.get("retry-after")) >= 1);
    const right = await token(base, s.clientId, s.clientSecret);
    assert.equal(right.status, 429, "the right secret got a token during the lock");
    assert.equal((await token(base, other.clientId, other.clientSecret)).status, 200);
    const after = await until(
      "the client's lock to end",
      async () => {
        const r = await token(base, s.clientId, s.clientSecret);
        return r.status === 429 ? false : r;
      },
      10_000,
      100,
    );
    assert.equal(after.status, 200);
    const log = await s.process.log();
    assert.match(
      log,
      new RegExp(`Failed sign-in to client "${s.clientId}" from "127\\.0\\.0\\.1"`),
    );
    assert.match(log, new RegExp(`Refused sign-in to client "${s.clientId}"`));
  }, "flags");
});

Deno.test("sign-in limits and sessions hold across two replicas on PostgreSQL", async () => {
  const broker = await sharedBroker();
  let pg: Awaited<ReturnType<typeof testDatabase>> | undefined;
  await withService(async () => {
    pg = await testDatabase();
    return { url: pg.url, drop: () => pg!.drop() };
  }, async (a, ctx) => {
    await Deno.mkdir(join(ctx.dir, "b"));
    const b = await startService({
      dir: join(ctx.dir, "b"),
      amqpUrl: ctx.amqpUrl,
      broker,
      database: ctx.database,
      env: ENV,
      existingClient: { clientId: a.clientId, clientSecret: a.clientSecret },
    });
    try {
      await addUser(ctx.database, "hana", "hana's password");
      assert.equal((await attempt(a.address, "hana", "x")).status, 401);
      assert.equal((await attempt(b.address, "hana", "y")).status, 401);
      assert.equal((await attempt(a.address, "hana", "z")).status, 429);
      assert.equal((await attempt(b.address, "hana", "hana's password")).status, 429);
      await until(
        "hana's lock to end on replica B",
        async () => (await attempt(b.address, "hana", "hana's password")).status === 303,
        10_000,
        100,
      );

      // A session started on A is valid on B; signing out on B ends it on A.
      const v = new Visitor(a.address);
      assert.equal((await v.signIn("hana", "hana's password")).res.status, 303);
      const onB = new Visitor(b.address);
      for (const [k, val] of v.cookies) onB.cookies.set(k, val);
      const home = await onB.get("/");
      assert.equal(home.res.status, 200);
      assert.match(home.text, /hana/);
      assert.equal((await onB.post("/logout", { csrf: csrfOf(home.text) })).res.status, 303);
      const after = await v.get("/");
      assert.equal(after.res.status, 303, "the session still worked on A after signing out on B");
      assert.match(after.res.headers.get("location") ?? "", /^\/login/);
    } finally {
      await b.process.stop();
    }
  });
});
