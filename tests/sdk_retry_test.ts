/**
 * The SDK's retries against the real service, with a fault-injecting proxy in front of it: a
 * 503 is retried; an answer lost after the service did the work is retried with the same
 * `Idempotency-Key`, so the task is created once; a service that cannot be reached is a clear
 * `network_error` after the configured retries, and so is one that never answers (each attempt
 * timed out).
 */
import assert from "node:assert/strict";
import { FuncxAPIError, FuncXClient } from "../mod.ts";
import { startServiceOnly } from "./harness/service_only.ts";

/** What the proxy does with the next requests whose path ends with a given suffix. */
type Fault = "unavailable" | "lose-answer" | "unauthorized" | "rate-limited" | "in-progress";

/** A proxy to `target` that applies queued faults, and records what reached it. */
function faultyProxy(target: string) {
  const faults: Array<{ path: string; fault: Fault }> = [];
  const seen: Array<{ method: string; path: string; key: string | null; fault?: Fault }> = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const i = faults.findIndex((f) => url.pathname.endsWith(f.path));
    const fault = i >= 0 ? faults.splice(i, 1)[0]!.fault : undefined;
    seen.push({
      method: req.method,
      path: url.pathname,
      key: req.headers.get("idempotency-key"),
      ...(fault ? { fault } : {}),
    });
    if (fault === "unavailable") return new Response("down for a moment", { status: 503 });
    if (fault === "unauthorized") {
      return Response.json({ code: "unauthorized", reason: "token expired" }, { status: 401 });
    }
    if (fault === "rate-limited") {
      return Response.json({ code: "too_many_requests", reason: "slow down" }, {
        status: 429,
        headers: { "retry-after": "1" },
      });
    }
    if (fault === "in-progress") {
      return Response.json({ code: "idempotency_key_in_progress", reason: "still at it" }, {
        status: 409,
        headers: { "retry-after": "1" },
      });
    }
    const res = await fetch(target + url.pathname + url.search, {
      method: req.method,
      headers: req.headers,
      ...(req.body ? { body: await req.arrayBuffer() } : {}),
    });
    if (fault === "lose-answer") {
      await res.body?.cancel();
      return new Response("bad gateway", { status: 502 });
    }
    return new Response(res.body, { status: res.status, headers: res.headers });
  });
  return {
    address: `http://127.0.0.1:${server.addr.port}`,
    faults,
    seen,
    close: () => server.shutdown(),
  };
}

/** The error of a call to a service at `address` that does not answer: a `network_error`. */
async function networkError(
  address: string,
  options: { retries: number; timeoutMs?: number },
): Promise<FuncxAPIError> {
  const client = new FuncXClient({
    serviceAddress: address,
    accessToken: "unused",
    checkVersion: false,
    ...options,
  });
  const err = await client.getTask(crypto.randomUUID()).then(
    () => assert.fail("no service answered"),
    (e) => e,
  );
  assert.ok(err instanceof FuncxAPIError, String(err));
  assert.equal(err.codeName, "network_error");
  return err;
}

Deno.test("FuncXClient retries: 503, lost answers with one idempotency key, unreachable", async (t) => {
  await using svc = await startServiceOnly();
  const user = await svc.newUser("retry-user");
  const proxy = faultyProxy(svc.service.address);
  try {
    const client = new FuncXClient({
      serviceAddress: proxy.address,
      clientId: user.clientId,
      clientSecret: user.clientSecret,
    });
    const endpointId = (await client.registerEndpoint("retry-ep")).endpoint_id;
    const fn = await client.registerFunction((x: number) => x + 1);

    await t.step("a 503 is retried and the call succeeds", async () => {
      proxy.faults.push({ path: "/v2/functions", fault: "unavailable" });
      const before = proxy.seen.length;
      const id = await client.registerFunction((x: number) => x * 2);
      assert.match(id, /^[0-9a-f-]{36}$/);
      const calls = proxy.seen.slice(before).filter((s) => s.path === "/v2/functions");
      assert.equal(calls.length, 2, JSON.stringify(calls));
      assert.equal(calls[0]!.fault, "unavailable");
      assert.ok(calls[0]!.key, "a POST carries an Idempotency-Key");
      assert.equal(calls[1]!.key, calls[0]!.key, "the retry carries the same key");
    });

    await t.step("a submit whose answer was lost creates its task once", async () => {
      const group = crypto.randomUUID();
      proxy.faults.push({ path: "/v2/submit", fault: "lose-answer" });
      const before = proxy.seen.length;
      const taskId = await client.run(fn, endpointId, { args: [1], taskGroupId: group });
      const calls = proxy.seen.slice(before).filter((s) => s.path === "/v2/submit");
      assert.equal(calls.length, 2, "the submit was sent twice");
      assert.equal(calls[0]!.fault, "lose-answer");
      // The service did the first one; the second got its stored answer.
      assert.deepEqual(await client.getTaskGroup(group), [taskId]);
    });

    await t.step("a 401 logs in again once and the call succeeds", async () => {
      proxy.faults.push({ path: "/v2/endpoints", fault: "unauthorized" });
      const before = proxy.seen.length;
      const endpoints = await client.getEndpoints();
      assert.ok(endpoints.some((e) => e.endpoint_id === endpointId));
      const paths = proxy.seen.slice(before).map((s) => s.path);
      assert.deepEqual(paths, ["/v2/endpoints", "/v2/oauth/token", "/v2/endpoints"]);
    });

    await t.step("a 401 that a new login does not cure is a FuncxAPIError", async () => {
      proxy.faults.push({ path: "/v2/whoami", fault: "unauthorized" });
      proxy.faults.push({ path: "/v2/whoami", fault: "unauthorized" });
      const err = await client.whoami().then(() => assert.fail("refused twice"), (e) => e);
      assert.ok(err instanceof FuncxAPIError, String(err));
      assert.equal(err.httpStatus, 401);
      assert.equal(err.codeName, "unauthorized");
      // With no retries allowed, the 401 itself is the outcome.
      const strict = new FuncXClient({
        serviceAddress: proxy.address,
        clientId: user.clientId,
        clientSecret: user.clientSecret,
        retries: 0,
      });
      await strict.whoami();
      proxy.faults.push({ path: "/v2/whoami", fault: "unauthorized" });
      const once = await strict.whoami().then(() => assert.fail("refused"), (e) => e);
      assert.ok(once instanceof FuncxAPIError, String(once));
      assert.equal(once.httpStatus, 401);
    });

    await t.step("a 429 and a 409 in progress wait as long as Retry-After says", async () => {
      for (const fault of ["rate-limited", "in-progress"] as const) {
        proxy.faults.push({ path: "/v2/functions", fault });
        const before = proxy.seen.length;
        const started = performance.now();
        await client.registerFunction((x: number) => x - 1);
        const waited = performance.now() - started;
        const calls = proxy.seen.slice(before).filter((s) => s.path === "/v2/functions");
        assert.equal(calls.length, 2, fault);
        assert.equal(calls[1]!.key, calls[0]!.key, "the retry carries the same key");
        assert.ok(waited >= 950, `${fault}: retried after ${waited.toFixed(0)} ms, not 1 s`);
      }
    });

    await t.step("an aborted signal ends a call and its retries at once", async () => {
      for (let i = 0; i < 10; i++) {
        proxy.faults.push({ path: "/v2/endpoints", fault: "unavailable" });
      }
      const patient = new FuncXClient({
        serviceAddress: proxy.address,
        clientId: user.clientId,
        clientSecret: user.clientSecret,
        retries: 10,
      });
      const reason = new Error("user gave up");
      const controller = new AbortController();
      setTimeout(() => controller.abort(reason), 300);
      const started = performance.now();
      const err = await patient.getEndpoints({ signal: controller.signal }).then(
        () => assert.fail("no answer was possible"),
        (e) => e,
      );
      assert.equal(err, reason);
      assert.ok(performance.now() - started < 2_000, "the backoff waits were cut short");
      proxy.faults.length = 0;
    });

    await t.step("two submits with their own keys are two tasks", async () => {
      const group = crypto.randomUUID();
      const a = await client.run(fn, endpointId, { args: [1], taskGroupId: group });
      const b = await client.run(fn, endpointId, { args: [1], taskGroupId: group });
      assert.notEqual(a, b);
      assert.deepEqual((await client.getTaskGroup(group)).sort(), [a, b].sort());
    });
  } finally {
    await proxy.close();
  }

  await t.step("an unreachable service is a network_error after the retries", async () => {
    const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (dead.addr as Deno.NetAddr).port;
    dead.close();
    const err = await networkError(`http://127.0.0.1:${port}`, { retries: 2 });
    assert.match(err.message, /after 3 attempt\(s\)/);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  });

  await t.step("a service that never answers times out on each attempt", async () => {
    // Takes the connection and reads the request, but never answers it.
    const held: Deno.Conn[] = [];
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepting = (async () => {
      for await (const conn of silent) held.push(conn);
    })();
    try {
      const err = await networkError(`http://127.0.0.1:${(silent.addr as Deno.NetAddr).port}`, {
        retries: 1,
        timeoutMs: 200,
      });
      assert.match(err.message, /after 2 attempt\(s\): Request timed out after 200 ms/);
      assert.equal(held.length, 2, "each attempt opened a connection of its own");
    } finally {
      silent.close();
      await accepting.catch(() => {});
      for (const c of held) c.close();
    }
  });
});
