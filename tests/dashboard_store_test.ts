/**
 * What the dashboard and the sign-in limits keep in the store, on both stores (SQLite and the
 * test run's PostgreSQL): sessions, sign-in counts and locks (attempts racing cannot get past
 * the limit), endpoint online periods, and the reads of the pages. Then the HTTP app itself,
 * driven with `app.request()`: cookies over https, the pages' security headers, and where a
 * visitor without a session is sent.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { testDatabase } from "./harness/postgres.ts";
import { openStore } from "../service/open_store.ts";
import type { Store } from "../service/store.ts";
import type { AttemptLimit } from "../service/store.ts";
import { createApp } from "../service/app.ts";
import { hashPassword } from "../service/auth.ts";
import { safeNext } from "../service/routes/login.ts";
import { DEFAULT_SIGN_IN_SETTINGS } from "../service/sign_in_guard.ts";
import { hopsOf } from "../service/dashboard/_charts.ts";
import { livePoints, quantile, type Sample } from "../service/dashboard/_live_chart.ts";

const limit = (key: string, countUpFront: boolean): AttemptLimit => ({
  key,
  maxFailures: 3,
  windowS: 60,
  lockS: 10,
  countUpFront,
});

async function contract(t: Deno.TestContext, store: Store): Promise<void> {
  const carol = await store.ensureUser("carol");

  await t.step("sessions: found while alive, gone when deleted or expired", async () => {
    await store.addSession("s1", carol.id, "tok", 2000);
    const s = await store.sessionFor("s1", 1000);
    assert.deepEqual(s, { user: carol, csrf: "tok", expiresAt: 2000 });
    assert.equal(await store.sessionFor("s1", 2001), undefined);
    assert.equal(await store.deleteSession("s1"), true);
    assert.equal(await store.deleteSession("s1"), false);
    assert.equal(await store.sessionFor("s1", 1000), undefined);
  });

  await t.step("attempts racing on one account never get past its limit", async () => {
    const acct = limit("user:racer", true);
    const verdicts = await Promise.all(
      Array.from({ length: 8 }, () => store.countSignIn([acct], 100)),
    );
    const allowed = verdicts.filter(([v]) => v!.lockedUntil === 0).length;
    assert.equal(allowed, 3, `${allowed} of 8 racing attempts were let through`);
    const [after] = await store.countSignIn([acct], 101);
    assert.equal(after!.lockedUntil, 110, "not locked for lockS");
    const [later] = await store.countSignIn([acct], 111);
    assert.deepEqual(later, { key: "user:racer", count: 1, lockedUntil: 0 });
  });

  await t.step("the failure that reaches the limit locks; success clears the account", async () => {
    const acct = limit("user:dora", true);
    const addr = limit("addr:192.0.2.1", false);
    for (let i = 1; i <= 2; i++) {
      const started = await store.countSignIn([acct, addr], 200);
      assert.equal(started.find((v) => v.key === acct.key)!.count, i);
      const failed = await store.failSignIn([acct, addr], 200);
      assert.ok(failed.every((v) => v.lockedUntil === 0), `locked after ${i} failures`);
    }
    await store.countSignIn([acct, addr], 201);
    await store.passSignIn(acct.key);
    const fresh = await store.countSignIn([acct, addr], 202);
    assert.equal(fresh.find((v) => v.key === acct.key)!.count, 1, "success did not clear it");
    // The address kept its two failures; a third locks it (and so refuses the next attempt).
    assert.equal(fresh.find((v) => v.key === addr.key)!.count, 2);
    const third = await store.failSignIn([acct, addr], 203);
    assert.equal(third.find((v) => v.key === addr.key)!.lockedUntil, 213);
    const refused = await store.countSignIn([limit("user:other", true), addr], 204);
    assert.equal(refused.find((v) => v.key === addr.key)!.lockedUntil, 213);
  });

  await t.step("endpoint online periods: extended by reports, new after a gap", async () => {
    const now = Date.now() / 1000;
    const ep = crypto.randomUUID();
    await store.applyResults({
      updates: [],
      completions: [],
      statuses: [{ endpointId: ep, state: { heartbeat_period: 30 }, expiresAt: now + 60 }],
    });
    await store.applyResults({
      updates: [],
      completions: [],
      statuses: [{ endpointId: ep, state: { heartbeat_period: 30 }, expiresAt: now + 90 }],
    });
    const one = await store.endpointUptime(ep, 0);
    assert.equal(one.length, 1);
    assert.equal(one[0]!.until, now + 90);
    // A goodbye (expiry now) ends the period; the next report starts another.
    await store.applyResults({
      updates: [],
      completions: [],
      statuses: [{ endpointId: ep, state: {}, expiresAt: Date.now() / 1000 - 0.001 }],
    });
    await new Promise((r) => setTimeout(r, 5));
    await store.applyResults({
      updates: [],
      completions: [],
      statuses: [{ endpointId: ep, state: {}, expiresAt: Date.now() / 1000 + 60 }],
    });
    assert.equal((await store.endpointUptime(ep, 0)).length, 2);
  });

  await t.step("task groups, their tasks and waiting tasks per endpoint", async () => {
    const group = crypto.randomUUID();
    const ep = crypto.randomUUID();
    const ids = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
    await store.addTasks(
      carol.id,
      group,
      ids.map((id) => ({ id, functionId: "f", endpointId: ep })),
    );
    await store.updateStatuses([{ taskId: ids[0]!, status: "running" }]);
    const [g] = await store.listTaskGroups(carol.id, 10);
    assert.equal(g!.id, group);
    assert.equal(g!.total, 3);
    assert.deepEqual(g!.counts, { "waiting-for-ep": 2, running: 1 });
    assert.deepEqual(await store.taskGroupSummary(group), g);
    assert.equal((await store.listGroupTasks(group, 2)).length, 2);
    assert.equal((await store.waitingTasks([ep])).get(ep), 2);
    assert.deepEqual(await store.listTaskGroups((await store.ensureUser("eve")).id, 10), []);
    await store.addFunction({
      id: crypto.randomUUID(),
      ownerId: carol.id,
      name: "double",
      code: "st\n(n) => n * 2",
      description: "",
      public: false,
      containerId: null,
      createdAt: 1,
    });
    assert.deepEqual((await store.listFunctions(carol.id, 10)).map((f) => f.name), ["double"]);
  });

  await t.step(
    "search: tasks and groups by state, function, endpoint and time, paged",
    async () => {
      const fran = await store.ensureUser("fran");
      const other = await store.ensureUser("gus");
      const [epA, epB, fnA, fnB] = Array.from({ length: 4 }, () => crypto.randomUUID());
      // 3 groups of 250 tasks (past the old caps of 500 tasks and 50 groups together); tasks of
      // the second group run on endpoint B with function B, and its first 10 succeed.
      const groups = Array.from({ length: 3 }, () => crypto.randomUUID());
      const marks: number[] = [];
      for (const [g, group] of groups.entries()) {
        marks.push(Date.now() / 1000);
        const ids = Array.from({ length: 250 }, () => crypto.randomUUID());
        const [ep, fn] = g === 1 ? [epB!, fnB!] : [epA!, fnA!];
        await store.addTasks(
          fran.id,
          group,
          ids.map((id) => ({ id, functionId: fn, endpointId: ep })),
        );
        if (g === 1) {
          await store.updateStatuses(
            ids.slice(0, 10).map((taskId) => ({ taskId, status: "success" })),
          );
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      await store.addTasks(other.id, crypto.randomUUID(), [
        { id: crypto.randomUUID(), functionId: fnA!, endpointId: epA! },
      ]);
      const all = await store.searchTasks(fran.id, {}, { limit: 100, offset: 0 });
      assert.equal(all.total, 750);
      assert.equal(all.items.length, 100);
      // Newest first; the pages meet without a gap or a repeat.
      const seen = new Set<string>();
      for (let offset = 0; offset < 750; offset += 200) {
        const page = await store.searchTasks(fran.id, {}, { limit: 200, offset });
        for (const task of page.items) seen.add(task.id);
      }
      assert.equal(seen.size, 750);
      assert.equal(all.items[0]!.groupId, groups[2]);
      const oldest = await store.searchTasks(fran.id, {}, {
        limit: 1,
        offset: 0,
        oldestFirst: true,
      });
      assert.equal(oldest.items[0]!.groupId, groups[0]);
      const byFn = await store.searchTasks(fran.id, { functionId: fnB }, { limit: 500, offset: 0 });
      assert.equal(byFn.total, 250);
      assert.ok(byFn.items.every((x) => x.functionId === fnB && x.groupId === groups[1]));
      const done = await store.searchTasks(fran.id, { statuses: ["success", "failed"] }, {
        limit: 50,
        offset: 0,
      });
      assert.equal(done.total, 10);
      assert.equal(
        (await store.searchTasks(fran.id, { statuses: [] }, { limit: 5, offset: 0 })).total,
        0,
      );
      const onA = await store.searchTasks(fran.id, { endpointId: epA, groupId: groups[2] }, {
        limit: 10,
        offset: 245,
      });
      assert.deepEqual([onA.total, onA.items.length], [250, 5]);
      const late = await store.searchTasks(fran.id, { since: marks[1] }, { limit: 1, offset: 0 });
      assert.equal(late.total, 500);
      const early = await store.searchTasks(fran.id, { until: marks[1] }, { limit: 1, offset: 0 });
      assert.equal(early.total, 250);

      const gAll = await store.searchTaskGroups(fran.id, {}, { limit: 2, offset: 0 });
      assert.equal(gAll.total, 3);
      assert.deepEqual(gAll.items.map((g) => g.id), [groups[2], groups[1]]);
      const gNext = await store.searchTaskGroups(fran.id, {}, { limit: 2, offset: 2 });
      assert.deepEqual(gNext.items.map((g) => g.id), [groups[0]]);
      // A group matches by one of its tasks and is counted over all of them.
      const gDone = await store.searchTaskGroups(fran.id, { statuses: ["success"] }, {
        limit: 10,
        offset: 0,
      });
      assert.equal(gDone.total, 1);
      assert.deepEqual(gDone.items[0]!.counts, { "waiting-for-ep": 240, success: 10 });
      assert.equal(gDone.items[0]!.total, 250);
      const gOnA = await store.searchTaskGroups(fran.id, { endpointId: epA, since: marks[1] }, {
        limit: 10,
        offset: 0,
      });
      assert.deepEqual(gOnA.items.map((g) => g.id), [groups[2]]);
      assert.equal(
        (await store.searchTaskGroups(other.id, { functionId: fnB }, { limit: 10, offset: 0 }))
          .total,
        0,
      );
    },
  );
}

Deno.test("dashboard store (sqlite): sessions, sign-in limits, uptime, lists", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-dash-store-" });
  const store = await openStore(join(dir, "s.db"));
  try {
    await contract(t, store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dashboard store (postgres): sessions, sign-in limits, uptime, lists", async (t) => {
  await using db = await testDatabase();
  const store = await openStore(db.url);
  try {
    await contract(t, store);
  } finally {
    await store.close();
  }
});

function app(store: Store) {
  return createApp({
    store,
    broker: {} as never,
    outbox: {} as never,
    settings: {
      publicAmqpUrl: "amqp://unused",
      tokenTtlS: 60,
      refreshTtlS: 60,
      deviceIntervalS: 1,
      publicAddress: undefined,
      rateLimitRequests: 0,
      rateLimitWindowS: 10,
      maxResultBytes: 1e6,
      maxRequestBytes: 1e6,
      taskTtlS: 60,
      signIn: { ...DEFAULT_SIGN_IN_SETTINGS, delayMs: 0 },
    },
  });
}

Deno.test("dashboard app: https cookies, security headers, sign-in redirects", async () => {
  const store = await openStore(":memory:");
  try {
    const u = await store.ensureUser("ivy");
    await store.setPassword(u.id, await hashPassword("ivy's password"));
    const a = app(store);

    const home = await a.request("https://funcx.example.org/groups");
    assert.equal(home.status, 303);
    assert.equal(home.headers.get("location"), "/login?next=%2Fgroups");
    assert.equal((await a.request("https://funcx.example.org/groups/x/progress")).status, 401);

    const form = await a.request("https://funcx.example.org/login");
    assert.match(form.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    assert.match(form.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/);
    const csrfCookie = form.headers.getSetCookie()[0]!;
    assert.match(csrfCookie, /^__Host-funcx_csrf=/);
    assert.match(csrfCookie, /; Secure/);
    const token = /name="csrf" value="([^"]+)"/.exec(await form.text())![1]!;
    const signed = await a.request("https://funcx.example.org/login", {
      method: "POST",
      headers: {
        cookie: csrfCookie.split(";")[0]!,
        origin: "https://funcx.example.org",
        "sec-fetch-site": "same-origin",
      },
      body: new URLSearchParams({ csrf: token, username: "ivy", password: "ivy's password" }),
    });
    assert.equal(signed.status, 303);
    const session = signed.headers.getSetCookie()[0]!;
    assert.match(session, /^__Host-funcx_session=/);
    for (const part of ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"]) {
      assert.ok(session.includes(part), `session cookie without ${part}: ${session}`);
    }
    const page = await a.request("https://funcx.example.org/", {
      headers: { cookie: session.split(";")[0]! },
    });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /ivy/);
    assert.equal(page.headers.get("cache-control"), "no-store");
  } finally {
    await store.close();
  }
});

/** Signs `name` in on `https://funcx.example.org`; the session cookie and its CSRF token. */
async function signedIn(
  a: ReturnType<typeof app>,
  name: string,
  password: string,
): Promise<{ cookie: string; csrf: string }> {
  const form = await a.request("https://funcx.example.org/login");
  const csrfCookie = form.headers.getSetCookie()[0]!.split(";")[0]!;
  const token = /name="csrf" value="([^"]+)"/.exec(await form.text())![1]!;
  const res = await a.request("https://funcx.example.org/login", {
    method: "POST",
    headers: { cookie: csrfCookie, "sec-fetch-site": "same-origin" },
    body: new URLSearchParams({ csrf: token, username: name, password }),
  });
  const cookie = res.headers.getSetCookie()[0]!.split(";")[0]!;
  const home = await a.request("https://funcx.example.org/", { headers: { cookie } });
  const csrf = /name="csrf" value="([^"]+)"/.exec(await home.text())![1]!;
  return { cookie, csrf };
}

Deno.test("dashboard actions: refused without the CSRF token or by another user; search checked", async () => {
  const store = await openStore(":memory:");
  try {
    const ivy = await store.ensureUser("ivy");
    const jon = await store.ensureUser("jon");
    await store.setPassword(ivy.id, await hashPassword("ivy's password"));
    await store.setPassword(jon.id, await hashPassword("jon's password"));
    const a = app(store);
    const ep = crypto.randomUUID();
    await store.upsertEndpoint({ id: ep, ownerId: ivy.id, name: "ivys-box", metadata: {} });
    const group = crypto.randomUUID();
    const task = crypto.randomUUID();
    await store.addTasks(ivy.id, group, [{
      id: task,
      functionId: crypto.randomUUID(),
      endpointId: ep,
    }]);
    const ivyS = await signedIn(a, "ivy", "ivy's password");
    const jonS = await signedIn(a, "jon", "jon's password");
    const post = (path: string, who: { cookie: string }, body: Record<string, string>) =>
      a.request(`https://funcx.example.org${path}`, {
        method: "POST",
        headers: { cookie: who.cookie, "sec-fetch-site": "same-origin" },
        body: new URLSearchParams(body),
      });
    const actions = [
      `/tasks/${task}/cancel`,
      `/groups/${group}/cancel`,
      `/endpoints/${ep}/lock`,
      `/endpoints/${ep}/unlock`,
      `/endpoints/${ep}/delete`,
    ];
    for (const path of actions) {
      // The owner without the token (or with another session's), and another user with his own.
      assert.equal((await post(path, ivyS, {})).status, 403, `${path} without a token`);
      assert.equal((await post(path, ivyS, { csrf: jonS.csrf })).status, 403, path);
      const other = await post(path, jonS, { csrf: jonS.csrf });
      assert.equal(other.status, 404, `${path} by another user`);
      assert.match(await other.text(), /You have no/);
      const cross = await a.request(`https://funcx.example.org${path}`, {
        method: "POST",
        headers: { cookie: ivyS.cookie, "sec-fetch-site": "cross-site" },
        body: new URLSearchParams({ csrf: ivyS.csrf }),
      });
      assert.equal(cross.status, 403, `${path} from another site`);
      const anon = await a.request(`https://funcx.example.org${path}`, { method: "POST" });
      assert.equal(anon.status, 401);
    }
    // Nothing changed.
    assert.equal((await store.getTask(task))!.status, "waiting-for-ep");
    const still = (await store.getEndpoint(ep))!;
    assert.deepEqual([still.lockedUntil, still.deleted], [0, false]);

    const get = (path: string, who: { cookie: string }) =>
      a.request(`https://funcx.example.org${path}`, { headers: { cookie: who.cookie } });
    const mine = await get(`/tasks?state=waiting&ep=${ep}`, ivyS);
    assert.equal(mine.status, 200);
    const text = await mine.text();
    assert.ok(text.includes(task), "her task is not listed");
    assert.match(text, /Showing 1–1 of 1/);
    assert.match(await (await get(`/groups?fn=${crypto.randomUUID()}`, ivyS)).text(), /None match/);
    const bad = await get("/tasks?state=sleeping&from=yesterday&page=x", ivyS);
    assert.equal(bad.status, 400);
    const said = await bad.text();
    for (const field of ['State "sleeping"', '"from"', 'Page "x"']) {
      assert.ok(said.includes(field.replaceAll('"', "&quot;")), `no error naming ${field}`);
    }
    assert.ok(!(await (await get("/tasks", jonS)).text()).includes(task), "her task in his list");
    // Past the old caps: page 2 of her 251 tasks, 100 a page, links both ways with the filters.
    await store.addTasks(
      ivy.id,
      crypto.randomUUID(),
      Array.from(
        { length: 250 },
        () => ({ id: crypto.randomUUID(), functionId: "f", endpointId: ep }),
      ),
    );
    const second = await (await get(`/tasks?ep=${ep}&page=2`, ivyS)).text();
    assert.match(second, /Showing 101–200 of 251/);
    assert.ok(second.includes(`href="/tasks?ep=${ep}&amp;page=3"`), "no link to page 3");
    assert.ok(second.includes(`href="/tasks?ep=${ep}"`), "no link back to page 1");
    assert.equal((second.match(/<tr>/g) ?? []).length, 101, "not 100 rows and a head");
    const home = await (await get("/", ivyS)).text();
    assert.match(home, /Throughput and latency/);
  } finally {
    await store.close();
  }
});

Deno.test("safeNext keeps sign-in redirects on this site", () => {
  assert.equal(safeNext("/groups/abc?x=1"), "/groups/abc?x=1");
  for (const bad of ["//evil.example/", "https://evil.example/", "/\\evil.example", "", null]) {
    assert.equal(safeNext(bad), "/", String(bad));
  }
});

Deno.test("hopsOf: hops in time order, from submission to the stored result", () => {
  const s = 1_700_000_000;
  const ns = (ms: number) => String(BigInt(s * 1000 + ms) * 1_000_000n);
  const hops = hopsOf(
    [
      { state: "running", timestamp: ns(30) },
      { state: "waiting-for-nodes", timestamp: ns(10) },
      { state: "execution-end", timestamp: ns(80) },
    ],
    s,
    s + 0.1,
  );
  assert.deepEqual(hops.map((h) => [h.from, h.to, Math.round(h.ms)]), [
    ["submitted", "waiting-for-nodes", 10],
    ["waiting-for-nodes", "running", 20],
    ["running", "execution-end", 50],
    ["execution-end", "result stored", 20],
  ]);
});

Deno.test("live chart: rates and latency between samples of the metrics", () => {
  const buckets = [0.001, 0.01, 0.1];
  assert.ok(Number.isNaN(quantile(buckets, [0, 0, 0, 0], 0.95)));
  // 100 observations: 90 under 1 ms, 10 between 10 and 100 ms.
  assert.ok(Math.abs(quantile(buckets, [90, 0, 10, 0], 0.95) - 0.055) < 1e-9);
  assert.equal(quantile(buckets, [0, 0, 0, 4], 0.5), 0.1);
  const at = (t: number, results: number, counts: number[], sum: number): Sample => ({
    t,
    submitted: results + 5,
    results,
    roundTrip: { buckets, counts, sum, count: counts.reduce((a, b) => a + b, 0) },
  });
  const points = livePoints([
    at(1000, 0, [0, 0, 0, 0], 0),
    at(3000, 100, [90, 0, 10, 0], 0.6),
    at(5000, 100, [90, 0, 10, 0], 0.6),
  ]);
  assert.equal(points.length, 2);
  assert.equal(points[0]!.resultsPerS, 50);
  assert.equal(points[0]!.submitsPerS, 50);
  assert.ok(Math.abs(points[0]!.meanMs! - 6) < 1e-9);
  assert.ok(Math.abs(points[0]!.p95Ms! - 55) < 1e-6);
  assert.deepEqual([points[1]!.resultsPerS, points[1]!.meanMs, points[1]!.p95Ms], [0, null, null]);
});
