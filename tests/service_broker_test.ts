/**
 * The service's broker side against a real RabbitMQ node: scoped logins (an endpoint or user
 * reaching for someone else's queue gets ACCESS_REFUSED from the broker itself), results stored
 * once and forwarded to the owner's task group queue, status reports, the result size limit, and
 * a service restart that loses nothing it accepted. The tests play the endpoint over AMQP.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { packArgs } from "../sdk/protocol/mod.ts";
import { type Message, packMessage } from "../sdk/protocol/mod.ts";
import { api } from "./harness/http.ts";
import { publishAs, resultFor, take, takeTasks, until } from "./harness/endpoint_peer.ts";
import { startServiceOnly } from "./harness/service_only.ts";

/** Expects a broker operation to be refused with ACCESS_REFUSED. */
async function refused(url: string, op: (ch: amqp.ConfirmChannel) => Promise<unknown>) {
  const conn = await amqp.connect(url);
  conn.on("error", () => {});
  try {
    const ch = await conn.createConfirmChannel();
    // A refused publish shows as "channel closed" on the confirm; the broker's reason comes with
    // the channel's error event.
    let channelError = "";
    ch.on("error", (e: Error) => (channelError = e.message));
    const err = await op(ch).then(() => undefined, (e) => e);
    assert.ok(err, "the broker allowed it");
    assert.match(`${String(err.message ?? err)} ${channelError}`, /ACCESS_REFUSED/);
  } finally {
    await conn.close().catch(() => {});
  }
}

Deno.test("service broker: scoped logins, forwarding, dedupe, limits, restart", async (t) => {
  await using fx = await startServiceOnly({ args: ["--max-result-bytes", "4096"] });
  const alice = fx.client;
  const bob = await fx.newUser("bob");
  const regA = await alice.registerEndpoint("alice-ep");
  const regB = await bob.client.registerEndpoint("bob-ep");
  const fnId = await alice.registerFunction((x: number) => x * 3);
  const token = await fx.token();

  const groupId = crypto.randomUUID();
  const submit = await api(fx.service.address, "POST", "/v2/submit", {
    token,
    json: {
      task_group_id: groupId,
      create_websocket_queue: true,
      tasks: [[fnId, regA.endpoint_id, packArgs([14])], [fnId, regA.endpoint_id, packArgs([1])]],
    },
  });
  assert.equal(submit.status, 200);
  const [t1, t2] = (submit.body["results"] as Array<{ task_uuid: string }>).map((r) => r.task_uuid);

  let streamQueue = "";
  await t.step("an endpoint's login reads its own task queue", async () => {
    // Tasks of one submit travel together, in one task_batch message.
    const messages = await take(regA.task_queue_info.connection_url, regA.task_queue_info.queue, 1);
    assert.deepEqual(messages.map((m) => m.message_type), ["task_batch"]);
    const batch = messages[0]!.data as { tasks: Array<{ task_id: string }> };
    assert.deepEqual(batch.tasks.map((t) => t.task_id).sort(), [t1, t2].sort());
  });

  await t.step("another endpoint's login is refused on that queue and routing key", async () => {
    await refused(
      regB.task_queue_info.connection_url,
      (ch) =>
        ch.checkQueue(regA.task_queue_info.queue).then(() =>
          ch.consume(regA.task_queue_info.queue, () => {})
        ),
    );
    await refused(regB.result_queue_info.connection_url, async (ch) => {
      ch.publish(
        "results",
        `${regA.endpoint_id}.results`,
        Buffer.from(packMessage(resultFor(t1!, 1))),
      );
      await ch.waitForConfirms();
    });
  });

  await t.step("a result is stored and forwarded to every result stream of its group", async () => {
    // Two processes watching the group: each has a queue of its own, and one login for both.
    const open = () =>
      api(fx.service.address, "POST", "/v2/result_streams", {
        token,
        json: { task_group_id: groupId },
      });
    const [s1, s2] = [await open(), await open()];
    assert.equal(s1.status, 201);
    assert.notEqual(s1.body["queue"], s2.body["queue"]);
    assert.equal(s1.body["connection_url"], s2.body["connection_url"]);
    await publishAs(regA, [resultFor(t1!, 42)]);
    const first = await until(async () => {
      const task = await alice.getTask(t1!);
      return task.pending ? undefined : task;
    }, "the result");
    assert.equal(first.status, "success");
    assert.equal(await alice.getResult(t1!), 42);
    const raw = await api(fx.service.address, "GET", `/v2/tasks/${t1}`, { token });
    const transitions = raw.body["task_transitions"] as Array<Record<string, string>>;
    assert.equal(transitions[0]!["state"], "execution-end");
    assert.match(transitions[0]!["timestamp"]!, /^\d{19}$/);
    const conn = await alice.getTask(t1!);
    assert.equal(conn.completion_t, first.completion_t);

    const res = await api(fx.service.address, "GET", "/v2/get_amqp_result_connection_url", {
      token,
    });
    const url = String(res.body["connection_url"]);
    assert.match(url, /^amqp:\/\/user-/);
    assert.equal(url, s1.body["connection_url"], "asking again changed the user's login");
    for (const s of [s1, s2]) {
      const forwarded = await take(url, String(s.body["queue"]), 1);
      assert.equal(forwarded.length, 1);
      assert.equal(forwarded[0]!.message_type, "result");
      assert.equal((forwarded[0]!.data as { task_id: string }).task_id, t1);
    }
    streamQueue = String(s1.body["queue"]);
  });

  await t.step("a duplicate result is stored once", async () => {
    const before = await alice.getTask(t1!);
    await publishAs(regA, [resultFor(t1!, 999)]);
    await publishAs(regA, [resultFor(t2!, 3)]);
    await until(async () => (await alice.getTask(t2!)).pending ? undefined : true, "task 2");
    const after = await alice.getTask(t1!);
    assert.equal(await alice.getResult(t1!), 42);
    assert.equal(after.completion_t, before.completion_t);
    // Results survive reading: a second read gives the same answer.
    assert.equal(await alice.getResult(t2!), 3);
    assert.equal(await alice.getResult(t2!), 3);
  });

  await t.step("another user's login is refused on the owner's result queue", async () => {
    const bobToken = await (async () => {
      const r = await api(fx.service.address, "POST", "/v2/oauth/token", {
        form: {
          grant_type: "client_credentials",
          client_id: bob.clientId,
          client_secret: bob.clientSecret,
        },
      });
      return String(r.body["access_token"]);
    })();
    const mine = await api(fx.service.address, "GET", "/v2/get_amqp_result_connection_url", {
      token,
    });
    const bobs = await api(fx.service.address, "GET", "/v2/get_amqp_result_connection_url", {
      token: bobToken,
    });
    assert.notEqual(bobs.body["queue_prefix"], mine.body["queue_prefix"]);
    await refused(String(bobs.body["connection_url"]), (ch) => ch.consume(streamQueue, () => {}));
    const bobsStream = await api(fx.service.address, "POST", "/v2/result_streams", {
      token: bobToken,
      json: { task_group_id: groupId },
    });
    assert.equal(bobsStream.status, 403);
  });

  await t.step(
    "a result over the size limit fails the task with MaxResultSizeExceeded",
    async () => {
      const id = await alice.run(fnId, regA.endpoint_id);
      const queued = await take(regA.task_queue_info.connection_url, regA.task_queue_info.queue, 1);
      assert.equal(queued.length, 1);
      await publishAs(regA, [resultFor(id, "x".repeat(10_000))]);
      const task = await until(async () => {
        const t = await alice.getTask(id);
        return t.pending ? undefined : t;
      }, "the oversized result");
      assert.equal(task.status, "failed");
      assert.equal(task.error_code, "MaxResultSizeExceeded");
      const err = await alice.getResult(id).then(() => undefined, (e) => e);
      assert.match(String(err?.message), /exceeded the service's limit of 4096B/);
    },
  );

  await t.step(
    "status reports make an endpoint online; heartbeat_period 0 makes it offline",
    async () => {
      const report = (period: number): Message => ({
        message_type: "ep_status_report",
        data: {
          endpoint_id: regA.endpoint_id,
          global_state: { heartbeat_period: period, total_workers: 3, idle_workers: 3 },
          task_statuses: {},
        },
      });
      await publishAs(regA, [report(30)]);
      const online = await until(async () => {
        const s = await alice.getEndpointStatus(regA.endpoint_id);
        return s.status === "online" ? s : undefined;
      }, "online");
      assert.equal(online.logs[0]!["total_workers"], 3);
      await publishAs(regA, [report(0)]);
      await until(async () => {
        const s = await alice.getEndpointStatus(regA.endpoint_id);
        return s.status === "offline" ? true : undefined;
      }, "offline");
    },
  );

  await t.step("re-registration rotates the endpoint's broker password", async () => {
    const again = await alice.registerEndpoint("alice-ep", { endpointId: regA.endpoint_id });
    assert.notEqual(again.task_queue_info.connection_url, regA.task_queue_info.connection_url);
    const old = await amqp.connect(regA.task_queue_info.connection_url).then(
      async (c) => {
        await c.close();
        return undefined;
      },
      (e) => e,
    );
    assert.ok(old, "the old password still works");
    regA.task_queue_info = again.task_queue_info;
    regA.result_queue_info = again.result_queue_info;
  });

  await t.step("a service restart loses nothing it accepted", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await alice.run(fnId, regA.endpoint_id, { args: [i] }));
    await fx.restart();
    for (const id of ids) assert.equal((await alice.getTask(id)).status, "waiting-for-ep");
    // A task the old process had not published yet waits out its outbox lease (10 s) first.
    const tasks = await takeTasks(
      regA.task_queue_info.connection_url,
      regA.task_queue_info.queue,
      3,
      30_000,
    );
    const got = tasks.map((t) => t.task_id);
    assert.deepEqual(got.sort(), [...ids].sort());
    await publishAs(regA, ids.map((id, i) => resultFor(id, i * 10)));
    for (const [i, id] of ids.entries()) {
      await until(
        async () => (await alice.getTask(id)).pending ? undefined : true,
        "restart results",
      );
      assert.equal(await alice.getResult(id), i * 10);
    }
  });
});
