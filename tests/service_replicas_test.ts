/**
 * Two service replicas behind "one address": two `funcx-service` processes on one PostgreSQL
 * database and one broker vhost. Whatever one replica did, the other sees: tokens, tasks and
 * their results (whichever replica's result processor took them from the shared `results`
 * queue), endpoint status, refresh-token rotation (one winner), and idempotency keys: a submit
 * retried on the other replica is answered from the store and creates nothing. The tests play
 * the endpoint over AMQP.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import amqp from "amqplib";
import { packArgs, packBuffers, serialize } from "../sdk/protocol/mod.ts";
import { encodeTask, type Message } from "../sdk/protocol/mod.ts";
import { api, type ApiAnswer, envelopeCode } from "./harness/http.ts";
import { publishAs, resultFor, takeTasks, until } from "./harness/endpoint_peer.ts";
import { testDatabase } from "./harness/postgres.ts";
import { denoRunArgs, runDeno } from "./harness/process.ts";
import { createVhost, deleteVhost, sharedBroker, startService } from "./harness/stack.ts";
import { openStore } from "../service/open_store.ts";
import { hashPassword } from "../service/auth.ts";

const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

/** A POST with a JSON body and optional Idempotency-Key, answered as sent. */
async function post(
  base: string,
  path: string,
  token: string,
  json: unknown,
  key?: string,
): Promise<ApiAnswer> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
  };
  if (key !== undefined) headers["idempotency-key"] = key;
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers,
    body: JSON.stringify(json),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

async function queueDepth(amqpUrl: string, queue: string): Promise<number> {
  const conn = await amqp.connect(amqpUrl);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("service replicas: two services share one PostgreSQL and one broker", async (t) => {
  const broker = await sharedBroker();
  await using db = await testDatabase();
  const dir = await Deno.makeTempDir({ prefix: "funcx-replicas-" });
  const vhost = `rep-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(broker, vhost);
  const creds = JSON.parse(
    await runDeno("cli/funcx_service.ts", [
      "client",
      "create",
      "--database",
      db.url,
      "--user",
      "dev",
    ]),
  );
  const existingClient = { clientId: creds.client_id, clientSecret: creds.client_secret };
  const replica = async (name: string) => {
    await Deno.mkdir(join(dir, name));
    return await startService({
      dir: join(dir, name),
      amqpUrl,
      broker,
      database: db.url,
      existingClient,
      args: ["--device-interval", "1"],
    });
  };
  const [a, b] = await Promise.all([replica("a"), replica("b")]);
  try {
    const A = a.address;
    const B = b.address;
    const tokenRes = await api(A, "POST", "/v2/oauth/token", {
      form: {
        grant_type: "client_credentials",
        client_id: creds.client_id,
        client_secret: creds.client_secret,
      },
    });
    const token = String(tokenRes.body["access_token"]);

    await t.step("a token issued by A is accepted by B", async () => {
      const me = await api(B, "GET", "/v2/whoami", { token });
      assert.equal(me.status, 200);
      assert.equal(me.body["username"], "dev");
    });

    const code = packBuffers([serialize(function triple(x: number) {
      return 3 * x;
    })]);
    const fn = await post(A, "/v2/functions", token, {
      function_name: "triple",
      function_code: code,
    });
    const fnId = String(fn.body["function_uuid"]);
    const reg = await post(B, "/v2/endpoints", token, { endpoint_name: "shared-ep" });
    assert.equal(reg.status, 200, JSON.stringify(reg.body));
    const epId = String(reg.body["endpoint_id"]);
    const taskQueue = reg.body["task_queue_info"] as { connection_url: string; queue: string };
    const endpoint = {
      result_queue_info: reg.body["result_queue_info"],
    } as unknown as Parameters<typeof publishAs>[0];

    await t.step("a task submitted through A: its result and status read through B", async () => {
      const sent = await post(A, "/v2/submit", token, { tasks: [[fnId, epId, packArgs([14])]] });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      const taskId = String((sent.body["results"] as Array<{ task_uuid: string }>)[0]!.task_uuid);
      const viaB = await api(B, "GET", `/v2/tasks/${taskId}`, { token });
      assert.equal(viaB.body["status"], "waiting-for-ep");
      const queued = await takeTasks(taskQueue.connection_url, taskQueue.queue, 1);
      assert.equal(queued[0]?.task_id, taskId);
      await publishAs(endpoint, [resultFor(taskId, 42)]);
      const done = await until(async () => {
        const r = await api(B, "GET", `/v2/tasks/${taskId}`, { token });
        return r.body["status"] === "success" ? r : undefined;
      }, "the result through B");
      assert.equal(done.body["result"], serialize(42));
      const viaA = await api(A, "GET", `/v2/tasks/${taskId}`, { token });
      assert.deepEqual(viaA.body, done.body);
    });

    await t.step("an endpoint's status report shows on both replicas", async () => {
      const report: Message = {
        message_type: "ep_status_report",
        data: {
          endpoint_id: epId,
          global_state: { heartbeat_period: 30, total_workers: 5 },
          task_statuses: {},
        },
      };
      // Whichever replica's consumer takes it from `results`, both answer from the store.
      await publishAs(endpoint, [report]);
      for (const base of [A, B]) {
        const online = await until(async () => {
          const s = await api(base, "GET", `/v2/endpoints/${epId}/status`, { token });
          return s.body["status"] === "online" ? s : undefined;
        }, `online on ${base}`);
        assert.equal(
          (online.body["logs"] as Array<Record<string, unknown>>)[0]!["total_workers"],
          5,
        );
      }
    });

    await t.step(
      "a task a dead replica left in the outbox is published by a live one",
      async () => {
        // What a replica leaves when it dies between its commit and its publish: the task and its
        // message, leased to it for a few seconds. The live replicas' sweeps take it once the lease
        // is over, and it reaches the endpoint once.
        const store = await openStore(db.url);
        const taskId = crypto.randomUUID();
        try {
          const owner = (await store.ensureUser("dev")).id;
          const added = await store.addTasks(owner, crypto.randomUUID(), [{
            id: taskId,
            functionId: fnId,
            endpointId: epId,
            message: encodeTask({
              task_id: taskId,
              container_id: null,
              task_buffer: code + packArgs([7]),
            }),
          }], { leaseUntil: Date.now() / 1000 + 2 });
          assert.equal(added && added.length, 1);
        } finally {
          await store.close();
        }
        // Confirmed, then deleted: once the outbox is empty, every publish of it is in the queue.
        const left = await openStore(db.url);
        try {
          await until(async () => (await left.outboxSize()) === 0 ? true : undefined, "the outbox");
        } finally {
          await left.close();
        }
        const queued = await takeTasks(taskQueue.connection_url, taskQueue.queue, 1);
        assert.deepEqual(queued.map((q) => q.task_id), [taskId]);
        const conn = await amqp.connect(taskQueue.connection_url);
        try {
          const ch = await conn.createChannel();
          const { messageCount } = await ch.checkQueue(taskQueue.queue);
          assert.equal(messageCount, 0, "the message was published more than once");
        } finally {
          await conn.close();
        }
      },
    );

    await t.step("refresh token rotation across replicas: exactly one of two wins", async () => {
      const store = await openStore(db.url);
      try {
        const erin = await store.ensureUser("erin");
        await store.setPassword(erin.id, await hashPassword("erin's long password"));
      } finally {
        await store.close();
      }
      const start = await api(A, "POST", "/v2/oauth/device", { form: {} });
      const approved = await fetch(`${B}/login`, {
        method: "POST",
        body: new URLSearchParams({
          user_code: String(start.body["user_code"]),
          username: "erin",
          password: "erin's long password",
          decision: "approve",
        }),
      });
      assert.equal(approved.status, 200);
      await approved.body?.cancel();
      const tokens = await api(A, "POST", "/v2/oauth/token", {
        form: { grant_type: DEVICE_GRANT, device_code: String(start.body["device_code"]) },
      });
      assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
      const refresh = String(tokens.body["refresh_token"]);
      const form = { grant_type: "refresh_token", refresh_token: refresh };
      const both = await Promise.all([
        api(A, "POST", "/v2/oauth/token", { form }),
        api(B, "POST", "/v2/oauth/token", { form }),
      ]);
      assert.deepEqual(both.map((r) => r.status).sort(), [200, 400]);
      assert.equal(both.find((r) => r.status === 400)!.body["error"], "invalid_grant");
    });

    await t.step("an idempotent submit retried on B is answered from the store", async () => {
      const groupId = crypto.randomUUID();
      const body = { task_group_id: groupId, tasks: [[fnId, epId, packArgs([1])]] };
      const key = crypto.randomUUID();
      const first = await post(A, "/v2/submit", token, body, key);
      assert.equal(first.status, 200);
      assert.equal(first.headers.get("idempotent-replayed"), null);
      const again = await post(B, "/v2/submit", token, body, key);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      assert.deepEqual(again.body, first.body);
      const group = await api(B, "GET", `/v2/taskgroup/${groupId}`, { token });
      assert.equal((group.body["tasks"] as unknown[]).length, 1, "the retry created a task");
      // The answers came after the broker confirmed the publish: what was published is queued.
      assert.equal(await queueDepth(amqpUrl, taskQueue.queue), 1, "the retry published a task");

      const other = await post(A, "/v2/submit", token, { ...body, tasks: [] }, key);
      assert.equal(other.status, 422);
      assert.equal(envelopeCode(other), "idempotency_key_reused");
      const bad = await post(A, "/v2/submit", token, body, "x".repeat(256));
      assert.equal(bad.status, 400);
      assert.equal(envelopeCode(bad), "invalid_idempotency_key");
    });

    await t.step("function and endpoint registration are idempotent too", async () => {
      const fnBody = { function_name: "triple", function_code: code };
      const key = crypto.randomUUID();
      const f1 = await post(A, "/v2/functions", token, fnBody, key);
      const f2 = await post(B, "/v2/functions", token, fnBody, key);
      assert.equal(f1.body["function_uuid"], f2.body["function_uuid"]);
      const f3 = await post(B, "/v2/functions", token, fnBody, crypto.randomUUID());
      assert.notEqual(f3.body["function_uuid"], f1.body["function_uuid"]);
      // Registration is idempotent by its id, not by key: no broker login is kept to replay.
      const epKey = crypto.randomUUID();
      const newEp = { endpoint_name: "new-ep", endpoint_uuid: crypto.randomUUID() };
      const e1 = await post(A, "/v2/endpoints", token, newEp, epKey);
      const e2 = await post(B, "/v2/endpoints", token, newEp, epKey);
      assert.equal(e2.headers.get("idempotent-replayed"), null);
      assert.equal(e1.body["endpoint_id"], newEp.endpoint_uuid);
      assert.equal(e2.body["endpoint_id"], newEp.endpoint_uuid);
      const login = (r: typeof e1) =>
        (r.body["task_queue_info"] as { connection_url: string }).connection_url;
      assert.notEqual(login(e1), login(e2), "the repeat rotated the broker login");
      const list = await api(A, "GET", "/v2/endpoints", { token });
      assert.equal((list.body as unknown as unknown[]).length, 2, "no third endpoint was made");
    });

    await t.step("a key whose first request is still running is 409 with Retry-After", async () => {
      const body = { tasks: [[fnId, epId, packArgs([2])]] };
      const key = crypto.randomUUID();
      // Hold the key as a request still running on some replica would.
      const store = await openStore(db.url);
      try {
        const user = (await store.userByName("dev"))!;
        const held = await store.reserveIdempotencyKey({
          userId: user.id,
          key,
          method: "POST",
          path: "/v2/submit",
          requestHash: await sha256Hex(JSON.stringify(body)),
        }, { now: Date.now() / 1000, leaseS: 600, ttlS: 600 });
        assert.ok(held.reserved);
        const busy = await post(B, "/v2/submit", token, body, key);
        assert.equal(busy.status, 409);
        assert.equal(envelopeCode(busy), "idempotency_key_in_progress");
        assert.equal(busy.headers.get("retry-after"), "1");
        await store.finishIdempotencyKey(
          { userId: user.id, key, token: held.token },
          { status: 200, body: '{"stored":true}' },
        );
        const replayed = await post(A, "/v2/submit", token, body, key);
        assert.deepEqual(replayed.body, { stored: true });
      } finally {
        await store.close();
      }
    });
  } finally {
    await Promise.all([a.process.stop(), b.process.stop()]);
    await deleteVhost(broker, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("funcx-service serve: an unreachable database is one clear line and exit code 1", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  const url = `postgresql://funcx:very-secret@127.0.0.1:${port}/funcx`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: denoRunArgs("cli/funcx_service.ts", ["serve", "--port", "0", "--database", url]),
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1, stderr);
  assert.equal(new TextDecoder().decode(out.stdout), "", "it said it was listening");
  assert.match(
    stderr,
    new RegExp(
      `^funcx-service: Cannot open the PostgreSQL database "postgresql://funcx:\\*\\*\\*@127\\.0\\.0\\.1:${port}/funcx": .*ECONNREFUSED.*check that PostgreSQL runs`,
    ),
  );
  assert.doesNotMatch(stderr, /very-secret/);
  assert.doesNotMatch(stderr, /\n\s+at /, "a stack trace was printed");
});
