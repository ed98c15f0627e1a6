/**
 * The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by
 * `playwright-core`, which never downloads a browser of its own) against a real service, broker
 * and endpoint. Alice signs in with the keyboard, sees her endpoint come online, watches a task
 * group she submits from the SDK reach 100 % without reloading, opens its failed task and reads
 * the remote error and its stack, reads a result, her functions and the endpoint's history,
 * checks that a phone-width page does not scroll sideways, and signs out. Bob then signs in,
 * sees none of Alice's endpoints, groups or tasks, also when he types their addresses, and
 * approves a device login with his session. Screenshots go to the folder the test prints
 * (`FUNCX_DASHBOARD_SHOTS` chooses it).
 *
 * Then the actions: Alice finds her failed task by searching, pages through her tasks, watches
 * the live chart of throughput and latency move, cancels a running task and a group's unfinished
 * tasks (their futures reject); Bob's posts to her task and endpoint, with his own CSRF token, are
 * "not found" and change nothing; Alice stops and locks her endpoint (it exits), unlocks it and
 * deletes it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { FuncXClient, FuncXExecutor } from "../mod.ts";
import { api } from "./harness/http.ts";
import { addUser } from "./harness/sign_in.ts";
import {
  createVhost,
  deleteVhost,
  type EndpointHandle,
  sharedBroker,
  startEndpoint,
  startService,
} from "./harness/stack.ts";
import { until } from "./harness/until.ts";

const CHROMIUM = "/usr/bin/chromium";
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

async function launch(userDataDir: string): Promise<BrowserContext> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(
      `Chromium is missing at ${CHROMIUM}: install Debian's package with ` +
        "`apt-get install -y chromium` (.ci/run does); the dashboard's browser test needs it",
    );
  }
  return await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** How `f` settles, or an error naming `what` when it has not within `ms`. */
async function settled(
  f: PromiseLike<unknown>,
  what: string,
  ms = 30_000,
): Promise<PromiseSettledResult<unknown>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      Promise.allSettled([f]).then(([r]) => r!),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not settle in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Signs in on the form using only the keyboard. */
async function signIn(page: Page, base: string, user: string, password: string): Promise<void> {
  await page.goto(`${base}/`);
  assert.match(new URL(page.url()).pathname, /^\/login$/, "not sent to sign in");
  await page.focus("#username");
  await page.keyboard.type(user);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.waitForURL(`${base}/`);
  assert.equal(await page.textContent("h1"), "Endpoints");
}

Deno.test("dashboard in Chromium: endpoints, live task group, failed task, sign-out, isolation", async (t) => {
  const broker = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-dashboard-" });
  const shots = Deno.env.get("FUNCX_DASHBOARD_SHOTS") ??
    await Deno.makeTempDir({ prefix: "funcx-dashboard-shots-" });
  await Deno.mkdir(shots, { recursive: true });
  console.log(`Dashboard screenshots in ${shots}`);
  const vhost = `dash-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(broker, vhost);
  const service = await startService({
    dir,
    amqpUrl,
    broker,
    database: join(dir, "service.db"),
  });
  const base = service.address;
  let endpoint: EndpointHandle | undefined;
  let browser: BrowserContext | undefined;
  // Its task is still running while Bob tries to cancel it; Alice cancels it at the end.
  let longFx: FuncXExecutor | undefined;
  const shot = async (page: Page, name: string) =>
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  try {
    const alice = await addUser(service.dbPath, "alice", "alice's password");
    await addUser(service.dbPath, "bob", "bob's password");
    const aliceClient = new FuncXClient({
      serviceAddress: base,
      clientId: alice.clientId,
      clientSecret: alice.clientSecret,
    });
    browser = await launch(join(dir, "chromium-profile"));
    const page = await browser.newPage();

    let endpointId = "";
    await t.step("Alice signs in and sees her endpoint come online", async () => {
      await signIn(page, base, "alice", "alice's password");
      const cookie = (await browser!.cookies(base)).find((c) => c.name === "funcx_session");
      assert.ok(cookie, "no session cookie");
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, "Lax");
      assert.match(await page.textContent("main") ?? "", /no endpoints yet/);
      await page.evaluate(() => ((globalThis as { marker?: number }).marker = 1));
      endpoint = await startEndpoint({
        service: {
          ...service,
          env: {
            ...service.env,
            FUNCX_SDK_CLIENT_ID: alice.clientId,
            FUNCX_SDK_CLIENT_SECRET: alice.clientSecret,
          },
        },
        dir,
        name: "alices-laptop",
        workers: 2,
      });
      endpointId = endpoint.endpointId;
      // The page refreshes itself in place every 5 s; the endpoint's row appears, online.
      await page.waitForSelector(`tr[data-endpoint="${endpointId}"] .s-online`, {
        timeout: 60_000,
      });
      assert.equal(
        await page.evaluate(() => (globalThis as { marker?: number }).marker),
        1,
        "the page was reloaded instead of refreshed in place",
      );
      const row = await page.textContent(`tr[data-endpoint="${endpointId}"]`);
      assert.match(row ?? "", /alices-laptop/);
      assert.match(row ?? "", /\d+ s ago/);
      await shot(page, "1-endpoints");
    });

    let groupId = "";
    let failedTaskId = "";
    let okTaskId = "";
    await t.step(
      "a task group from the SDK reaches 100 % live; its failed task shows the remote error",
      async () => {
        await using fx = new FuncXExecutor({ endpointId, client: aliceClient });
        groupId = fx.taskGroupId;
        const slowSquare = async (n: number) => {
          await new Promise((r) => setTimeout(r, 700));
          if (n === 7) throw new RangeError(`bad input ${n}`);
          return { n, square: n * n };
        };
        const futures = Array.from({ length: 12 }, (_, i) => fx.submit(slowSquare, i));
        const ids = await until(
          "the service to acknowledge the tasks",
          () => futures.every((f) => f.taskId) && futures.map((f) => f.taskId!),
        );
        failedTaskId = ids[7]!;
        okTaskId = ids[3]!;
        await page.goto(`${base}/groups/${groupId}`);
        const first = await page.textContent("[data-percent]");
        // A marker that a reload would lose: the page must update itself.
        await page.evaluate(() => ((globalThis as { marker?: number }).marker = 1));
        await page.waitForSelector('[data-percent]:text-is("100 %")', { timeout: 60_000 });
        const settled = await Promise.allSettled(futures);
        assert.equal(settled.filter((s) => s.status === "rejected").length, 1);
        assert.notEqual(first, "100 %", "the group was done before the page showed it");
        assert.equal(await page.evaluate(() => (globalThis as { marker?: number }).marker), 1);
        assert.equal(await page.textContent('[data-count="success"]'), "11");
        assert.equal(await page.textContent('[data-count="failed"]'), "1");
        assert.equal(await page.textContent(`[data-task-status="${failedTaskId}"]`), "failed");
        await shot(page, "2-task-group");

        // To the failed task with the keyboard: focus its link, press Enter.
        await page.focus(`a[href="/tasks/${failedTaskId}"]`);
        await page.keyboard.press("Enter");
        await page.waitForURL(`${base}/tasks/${failedTaskId}`);
        const alert = await page.textContent("p.error");
        assert.match(alert ?? "", /RangeError/);
        assert.match(alert ?? "", /bad input 7/);
        assert.match(await page.textContent('pre[aria-label="Stack trace"]') ?? "", /RangeError/);
        assert.ok(await page.$("figure.hops svg"), "no timeline chart");
        assert.match(await page.textContent("figure.hops") ?? "", /running/);
        await shot(page, "3-failed-task");

        await page.goto(`${base}/tasks/${okTaskId}`);
        assert.match(await page.textContent('pre[aria-label="Result"]') ?? "", /square: 9/);
      },
    );

    await t.step("functions, the endpoint's page, and a phone-width page", async () => {
      await page.goto(`${base}/`);
      assert.match(await page.textContent("main") ?? "", new RegExp(groupId));
      await shot(page, "0-overview");
      await page.goto(`${base}/functions`);
      assert.match(await page.textContent("main") ?? "", /slowSquare|\(anonymous\)/);
      await shot(page, "4-functions");
      await page.goto(`${base}/endpoints/${endpointId}`);
      assert.match(await page.textContent("main") ?? "", /Workers/);
      assert.ok(await page.$("figure.uptime svg"), "no status history");
      assert.match(await page.textContent("main") ?? "", /Online \d+ % of the last 60 minutes/);
      await shot(page, "5-endpoint");
      await page.setViewportSize({ width: 390, height: 844 });
      for (const path of ["/", `/groups/${groupId}`, `/tasks/${failedTaskId}`]) {
        await page.goto(`${base}${path}`);
        const wide = await page.evaluate<number>(
          "document.documentElement.scrollWidth - document.documentElement.clientWidth",
        );
        assert.ok(wide <= 1, `${path} scrolls sideways by ${wide} px on a phone`);
      }
      await shot(page, "6-phone-task");
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    await t.step("Alice searches her tasks and groups, and pages through them", async () => {
      await page.goto(`${base}/tasks`);
      await page.selectOption('select[name="state"]', "failed");
      await page.focus('form.filters button[type="submit"]');
      await page.keyboard.press("Enter");
      await page.waitForURL(/state=failed/);
      assert.match(await page.textContent("[data-showing]") ?? "", /Showing 1–1 of 1/);
      assert.ok(await page.$(`a[href="/tasks/${failedTaskId}"]`), "the failed task is not found");
      await shot(page, "8-search-failed");
      await page.goto(`${base}/tasks?state=success&ep=${endpointId}`);
      assert.match(await page.textContent("[data-showing]") ?? "", /of 11$/);
      await page.goto(`${base}/tasks?from=2000-01-01T00:00&to=2000-01-02T00:00`);
      assert.match(await page.textContent("main") ?? "", /No tasks match/);
      const bad = await page.goto(`${base}/groups?from=yesterday`);
      assert.equal(bad?.status(), 400);
      assert.match(await page.textContent(".error") ?? "", /"from" must be a date and time/);
      await page.goto(`${base}/groups?state=failed`);
      assert.ok(await page.$(`a[href="/groups/${groupId}"]`), "the group with the failure");
    });

    let longId = "";
    let long: PromiseLike<unknown> & { cancel(): boolean } | undefined;
    await t.step("Alice cancels a running task and a group's unfinished tasks", async () => {
      await using fx = new FuncXExecutor({ endpointId, client: aliceClient });
      const nap = async (s: number) => {
        await new Promise((r) => setTimeout(r, s * 1000));
        return s;
      };
      const one = fx.submit(nap, 120);
      const id = await until("the task's id", () => one.taskId);
      await page.goto(`${base}/tasks/${id}`);
      await page.click('form[action$="/cancel"] button');
      await page.waitForURL(`${base}/tasks/${id}?done=task-cancelled`);
      assert.match(await page.textContent(".notice") ?? "", /The task was cancelled/);
      assert.equal(await page.textContent(".facts .badge"), "failed");
      const outcome = await settled(one, "the cancelled task's future");
      assert.equal(outcome.status, "rejected");
      assert.match(String((outcome as PromiseRejectedResult).reason), /cancelled by its owner/);
      await shot(page, "9-task-cancelled");

      // A group of naps: 2 run on the 2 workers, the rest wait; one button cancels them all.
      fx.taskGroupId = crypto.randomUUID();
      const naps = Array.from({ length: 6 }, () => fx.submit(nap, 120));
      await until("the group's tasks to be sent", () => naps.every((f) => f.taskId));
      await page.goto(`${base}/groups/${fx.taskGroupId}`);
      await page.click('form[action$="/cancel"] button');
      await page.waitForURL(/done=group-cancelled/);
      await page.waitForSelector('[data-percent]:text-is("100 %")', { timeout: 30_000 });
      assert.equal(await page.textContent('[data-count="failed"]'), "6");
      const outcomes = await Promise.all(naps.map((f) => settled(f, "a cancelled nap's future")));
      assert.ok(outcomes.every((x) => x.status === "rejected"), "a cancelled nap finished");
      assert.equal(
        await page.$('form[action$="/cancel"]'),
        null,
        "cancel offered for a done group",
      );
      await shot(page, "10-group-cancelled");
      // Still running when Bob comes: he must not be able to cancel it.
      longFx = new FuncXExecutor({ endpointId, client: aliceClient });
      const f = longFx.submit(nap, 300);
      long = f;
      longId = await until("the long task's id", () => f.taskId);
    });

    await t.step("the overview charts throughput and latency live", async () => {
      await page.goto(`${base}/`);
      await page.waitForSelector('polyline[data-series="results"]', { timeout: 30_000 });
      const total = Number(await page.textContent('[data-live="results-total"]'));
      assert.ok(total >= 12, `${total} results since the service started`);
      const points = await page.getAttribute('polyline[data-series="results"]', "points");
      assert.ok((points ?? "").trim().split(" ").length >= 2, "a line of one point");
      await shot(page, "11-live-chart");
    });

    await t.step("signing out ends the session", async () => {
      await page.goto(`${base}/`);
      await page.click("form.signout button");
      await page.waitForURL(/\/login$/);
      await page.goto(`${base}/groups/${groupId}`);
      assert.match(new URL(page.url()).pathname, /^\/login$/);
      const res = await fetch(`${base}/groups/${groupId}/progress`);
      assert.equal(res.status, 401);
      await res.body?.cancel();
    });

    await t.step("Bob sees none of Alice's endpoints, groups or tasks", async () => {
      await signIn(page, base, "bob", "bob's password");
      const home = await page.textContent("main") ?? "";
      assert.match(home, /no endpoints yet/);
      assert.ok(!home.includes(endpointId) && !home.includes(groupId), "Alice's ids on his page");
      await page.goto(`${base}/groups`);
      assert.ok(!(await page.content()).includes(groupId), "Alice's group in his list");
      for (
        const path of [
          `/endpoints/${endpointId}`,
          `/groups/${groupId}`,
          `/tasks/${failedTaskId}`,
          `/tasks/${okTaskId}`,
        ]
      ) {
        const res = await page.goto(`${base}${path}`);
        assert.equal(res?.status(), 404, `${path} answered ${res?.status()}`);
        const html = await page.content();
        assert.ok(!html.includes("bad input") && !html.includes("alices-laptop"), path);
      }
      const progress = await page.goto(`${base}/groups/${groupId}/progress`);
      assert.equal(progress?.status(), 404);
      // His own CSRF token does not let him act on Alice's task, group or endpoint.
      await page.goto(`${base}/`);
      const csrf = await page.inputValue('form.signout input[name="csrf"]');
      for (
        const path of [
          `/tasks/${longId}/cancel`,
          `/groups/${groupId}/cancel`,
          `/endpoints/${endpointId}/lock`,
          `/endpoints/${endpointId}/delete`,
        ]
      ) {
        const res = await page.request.post(`${base}${path}`, {
          form: { csrf },
          headers: { origin: base },
          maxRedirects: 0,
        });
        assert.equal(res.status(), 404, `${path} answered ${res.status()}`);
      }
      assert.notEqual((await aliceClient.getTask(longId)).status, "failed", "Bob cancelled it");
      await page.goto(`${base}/functions`);
      assert.match(await page.textContent("main") ?? "", /no functions/);
      await shot(page, "7-bob-not-found");
    });

    await t.step("Bob approves a device login with his session", async () => {
      const start = await api(base, "POST", "/v2/oauth/device", { form: {} });
      await page.goto(String(start.body["verification_uri_complete"]));
      assert.equal(await page.inputValue("#user_code"), String(start.body["user_code"]));
      await page.click('button[value="approve"]');
      await page.waitForSelector("text=You can return to your terminal");
      const tokens = await until(
        "the device login to be approved",
        async () => {
          const r = await api(base, "POST", "/v2/oauth/token", {
            form: { grant_type: DEVICE_GRANT, device_code: String(start.body["device_code"]) },
          });
          return r.status === 200 ? r : r.body["error"] === "slow_down" ||
              r.body["error"] === "authorization_pending"
            ? false
            : assert.fail(JSON.stringify(r.body));
        },
        30_000,
        1000,
      );
      const me = await api(base, "GET", "/v2/whoami", {
        token: String(tokens.body["access_token"]),
      });
      assert.equal(me.body["username"], "bob");
    });
    await t.step("Alice stops and locks her endpoint, unlocks it, and deletes it", async () => {
      await page.click("form.signout button");
      await page.waitForURL(/\/login$/);
      await signIn(page, base, "alice", "alice's password");
      // Cancelled now by its own future (the SDK asks the service), it settles at once.
      long!.cancel();
      assert.equal((await settled(long!, "the long task")).status, "rejected");
      await longFx!.shutdown();
      const mine = await page.goto(`${base}/endpoints/${endpointId}`);
      // Bob's posts left it as it was: not deleted, not locked.
      assert.equal(mine?.status(), 200);
      assert.ok(await page.$('form[action$="/lock"]'), "locked by Bob's post");
      await page.selectOption('select[name="seconds"]', "600");
      await shot(page, "12-endpoint-actions");
      await page.click('form[action$="/lock"] button');
      await page.waitForURL(/done=endpoint-locked/);
      assert.match(await page.textContent(".facts") ?? "", /locked\s+until/);
      // Told to shut down, the endpoint exits; its long task is not left hanging on it.
      await endpoint!.process.status;
      await page.click('form[action$="/unlock"] button');
      await page.waitForURL(/done=endpoint-unlocked/);
      assert.match(await page.textContent(".notice") ?? "", /can start again/);
      assert.equal(await page.$('form[action$="/unlock"]'), null);
      await page.click("details.confirm summary");
      await page.click('form[action$="/delete"] button');
      await page.waitForURL(`${base}/?done=endpoint-deleted`);
      assert.match(await page.textContent(".notice") ?? "", /was deleted/);
      assert.equal(await page.$(`tr[data-endpoint="${endpointId}"]`), null);
      const gone = await page.goto(`${base}/endpoints/${endpointId}`);
      assert.equal(gone?.status(), 404);
    });
  } finally {
    await longFx?.shutdown({ wait: false });
    await browser?.close();
    await endpoint?.process.stop();
    await service.process.stop();
    await deleteVhost(broker, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
