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
  } finally {
    await browser?.close();
    await endpoint?.process.stop();
    await service.process.stop();
    await deleteVhost(broker, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
