/**
 * The service's REST routes against a real service process and broker: success shapes, the
 * error envelope for bad input, and a second user refused everywhere it should be. The same
 * steps run with each store: SQLite and PostgreSQL.
 */
import assert from "node:assert/strict";
import { FuncxAPIError } from "../mod.ts";
import { packArgs, packBuffers, serialize } from "../sdk/protocol/mod.ts";
import { api, envelopeCode } from "./harness/http.ts";
import { startServiceOnly } from "./harness/service_only.ts";

for (const store of ["sqlite", "postgres"] as const) {
  Deno.test(`service routes (${store}): shapes, errors and authorization`, (t) => routes(t, store));
}

async function routes(t: Deno.TestContext, store: "sqlite" | "postgres"): Promise<void> {
  await using fx = await startServiceOnly({ args: ["--max-request-bytes", "65536"], store });
  const base = fx.service.address;
  const alice = fx.client;
  const token = await fx.token();
  const bob = await fx.newUser("bob");
  const code = packBuffers([serialize(function double(x: number) {
    return 2 * x;
  })]);

  await t.step("version needs no token; service=all gives versions", async () => {
    const plain = await api(base, "GET", "/v2/version");
    assert.equal(plain.status, 200);
    assert.equal(typeof plain.body, "string");
    const all = await api(base, "GET", "/v2/version?service=all");
    assert.equal(typeof all.body["api"], "string");
    assert.equal(typeof all.body["min_sdk_version"], "string");
    assert.equal(typeof all.body["min_ep_version"], "string");
  });

  await t.step("no token or a bad token is 401 unauthorized", async () => {
    assert.equal(envelopeCode(await api(base, "GET", "/v2/endpoints")), "unauthorized");
    const bad = await api(base, "GET", "/v2/endpoints", { token: "not-a-token" });
    assert.equal(bad.status, 401);
    assert.equal(envelopeCode(bad), "unauthorized");
  });

  await t.step("malformed JSON, wrong types and non-UUID ids are 4xx envelopes", async () => {
    const bad = await api(base, "POST", "/v2/functions", { token, raw: "{not json" });
    assert.equal(bad.status, 400);
    assert.equal(envelopeCode(bad), "invalid_json");
    const wrong = await api(base, "POST", "/v2/functions", {
      token,
      json: { function_name: 5, function_code: code },
    });
    assert.equal(wrong.status, 400);
    assert.equal(envelopeCode(wrong), "bad_request");
    assert.match(String(wrong.body.reason), /function_name/);
    const garbage = await api(base, "POST", "/v2/functions", {
      token,
      json: { function_name: "x", function_code: "12\nnot a buffer" },
    });
    assert.equal(envelopeCode(garbage), "bad_request");
    const notUuid = await api(base, "GET", "/v2/tasks/123", { token });
    assert.equal(notUuid.status, 400);
    assert.equal(envelopeCode(notUuid), "invalid_uuid");
    const noRoute = await api(base, "GET", "/v2/nothing-here", { token });
    assert.equal(noRoute.status, 404);
    const tooBig = await api(base, "POST", "/v2/submit", {
      token,
      json: { tasks: [[crypto.randomUUID(), crypto.randomUUID(), "x".repeat(70_000)]] },
    });
    assert.equal(tooBig.status, 413);
    assert.equal(envelopeCode(tooBig), "request_too_large");
    const notArray = await api(base, "POST", "/v2/submit", { token, json: { tasks: "no" } });
    assert.equal(envelopeCode(notArray), "bad_request");
  });

  const fnId = await alice.registerFunction(function double(x: number) {
    return 2 * x;
  });
  const reg = await alice.registerEndpoint("ep-one");
  const epId = reg.endpoint_id;

  await t.step("functions: register, read, unknown, private to their owner", async () => {
    const got = await api(base, "GET", `/v2/functions/${fnId}`, { token });
    assert.equal(got.status, 200);
    assert.equal(got.body["function_name"], "double");
    assert.equal(got.body["public"], false);
    const unknown = await api(base, "GET", `/v2/functions/${crypto.randomUUID()}`, { token });
    assert.equal(unknown.status, 404);
    assert.equal(envelopeCode(unknown), "function_not_found");
    const err = await bob.client.run(fnId, epId).then(() => undefined, (e) => e);
    assert.ok(err instanceof FuncxAPIError);
    assert.equal(err.codeName, "function_access_forbidden");
  });

  await t.step("endpoints: registration shape, list, get, status", () => {
    assert.equal(reg.task_queue_info.queue, `${epId}.tasks`);
    assert.equal(reg.task_queue_info.exchange, "tasks");
    assert.equal(reg.result_queue_info.queue_publish_kwargs.routing_key, `${epId}.results`);
    assert.match(reg.task_queue_info.connection_url, new RegExp(`endpoint-${epId}`));
  });
  await t.step("endpoints: list, get and offline status", async () => {
    const list = await alice.getEndpoints();
    assert.deepEqual(list.map((e) => e.endpoint_id), [epId]);
    assert.equal(list[0]!.status, "offline");
    const one = await alice.getEndpoint(epId);
    assert.equal(one["name"], "ep-one");
    const status = await alice.getEndpointStatus(epId);
    assert.equal(status.status, "offline");
    assert.deepEqual(status.logs, []);
  });

  await t.step("a second user is refused on someone else's endpoint", async () => {
    const stolen = await bob.client.registerEndpoint("mine", { endpointId: epId }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(stolen instanceof FuncxAPIError);
    assert.equal(stolen.httpStatus, 409);
    for (
      const call of [
        () => bob.client.getEndpoint(epId),
        () => bob.client.getEndpointStatus(epId),
        () => bob.client.lockEndpoint(epId),
        () => bob.client.deleteEndpoint(epId),
      ]
    ) {
      const e = await call().then(() => undefined, (x) => x);
      assert.ok(e instanceof FuncxAPIError);
      assert.equal(e.codeName, "endpoint_access_forbidden");
    }
    const bobFn = await bob.client.registerFunction((x: number) => x);
    const e = await bob.client.run(bobFn, epId).then(() => undefined, (x) => x);
    assert.equal(e.codeName, "endpoint_access_forbidden");
    assert.deepEqual(await bob.client.getEndpoints(), []);
  });

  await t.step("submit: per-task results, 207 when some failed, task groups", async () => {
    const groupId = crypto.randomUUID();
    const res = await api(base, "POST", "/v2/submit", {
      token,
      json: {
        task_group_id: groupId,
        tasks: [
          [fnId, epId, packArgs([1])],
          [crypto.randomUUID(), epId, packArgs([2])],
          ["nope", epId, packArgs([3])],
          [fnId, epId, packArgs([4])],
        ],
      },
    });
    assert.equal(res.status, 207);
    assert.equal(res.body["response"], "batch");
    assert.equal(res.body["task_group_id"], groupId);
    const results = res.body["results"] as Array<Record<string, unknown>>;
    assert.equal(results.length, 4);
    assert.equal(results[0]!["status"], "Success");
    assert.equal(results[1]!["code"], "function_not_found");
    assert.equal(results[2]!["code"], "invalid_uuid");
    assert.equal(results[3]!["status"], "Success");
    const ids = [results[0]!["task_uuid"], results[3]!["task_uuid"]] as string[];
    const group = await api(base, "GET", `/v2/taskgroup/${groupId}`, { token });
    assert.deepEqual(
      (group.body["tasks"] as Array<{ id: string }>).map((t) => t.id).sort(),
      [...ids].sort(),
    );
    const task = await alice.getTask(ids[0]!);
    assert.equal(task.status, "waiting-for-ep");
    assert.equal(task.pending, true);

    const bobToken = await tokenFor(base, bob.clientId, bob.clientSecret);
    const hidden = await api(base, "GET", `/v2/taskgroup/${groupId}`, { token: bobToken });
    assert.equal(hidden.status, 404);
    assert.equal(envelopeCode(hidden), "task_group_not_found");
    const hiddenTask = await api(base, "GET", `/v2/tasks/${ids[0]}`, { token: bobToken });
    assert.equal(hiddenTask.status, 404);
    assert.equal(envelopeCode(hiddenTask), "task_not_found");
    const intoOthers = await api(base, "POST", "/v2/submit", {
      token: bobToken,
      json: { task_group_id: groupId, tasks: [] },
    });
    assert.equal(intoOthers.status, 403);
    assert.equal(envelopeCode(intoOthers), "task_group_access_forbidden");

    const unknown = crypto.randomUUID();
    const batch = await api(base, "POST", "/v2/batch_status", {
      token,
      json: { task_ids: [ids[1], unknown] },
    });
    const r = batch.body["results"] as Record<string, Record<string, unknown>>;
    assert.equal(r[ids[1]!]!["status"], "waiting-for-ep");
    assert.equal(r[unknown]!["status"], "failed");
    assert.equal(r[unknown]!["reason"], "Unknown task id");
    const bobBatch = await api(base, "POST", "/v2/batch_status", {
      token: bobToken,
      json: { task_ids: [ids[1]] },
    });
    assert.equal(
      (bobBatch.body["results"] as Record<string, Record<string, unknown>>)[ids[1]!]!["reason"],
      "Unknown task id",
    );
  });

  await t.step("allow-list: only listed functions may run", async () => {
    const other = await alice.registerFunction((x: number) => x + 1);
    const added = await api(base, "POST", `/v2/endpoints/${epId}/whitelist`, {
      token,
      json: { func: [fnId] },
    });
    assert.equal(added.status, 200);
    assert.deepEqual(added.body["functions"], [fnId]);
    const refused = await alice.run(other, epId).then(() => undefined, (e) => e);
    assert.ok(refused instanceof FuncxAPIError);
    assert.equal(refused.codeName, "function_not_permitted");
    assert.equal(typeof await alice.run(fnId, epId), "string");
    const listed = await api(base, "GET", `/v2/endpoints/${epId}/whitelist`, { token });
    assert.deepEqual(listed.body["functions"], [fnId]);
    const removed = await api(base, "DELETE", `/v2/endpoints/${epId}/whitelist/${fnId}`, { token });
    assert.deepEqual(removed.body["functions"], []);
    const again = await api(base, "DELETE", `/v2/endpoints/${epId}/whitelist/${fnId}`, { token });
    assert.equal(again.status, 404);
    assert.equal(typeof await alice.run(other, epId), "string");
  });

  await t.step("sharing: the owner's users may submit, others may not", async () => {
    const bobFn = await bob.client.registerFunction((x: number) => x - 1);
    const before = await bob.client.run(bobFn, epId).then(() => undefined, (e) => e);
    assert.equal(before.codeName, "endpoint_access_forbidden");
    const shared = await api(base, "POST", `/v2/endpoints/${epId}/users`, {
      token,
      json: { users: ["bob"] },
    });
    assert.deepEqual(shared.body["users"], ["bob"]);
    const taskId = await bob.client.run(bobFn, epId);
    assert.equal((await bob.client.getTask(taskId)).status, "waiting-for-ep");
    // Sharing lets bob submit, not manage the endpoint or see alice's tasks.
    const manage = await bob.client.lockEndpoint(epId).then(() => undefined, (e) => e);
    assert.equal(manage.codeName, "endpoint_access_forbidden");
    const nobody = await api(base, "POST", `/v2/endpoints/${epId}/users`, {
      token,
      json: { users: ["nobody-here"] },
    });
    assert.equal(nobody.status, 404);
    assert.equal(envelopeCode(nobody), "user_not_found");
    const unshared = await api(base, "DELETE", `/v2/endpoints/${epId}/users/bob`, { token });
    assert.deepEqual(unshared.body["users"], []);
    const after = await bob.client.run(bobFn, epId).then(() => undefined, (e) => e);
    assert.equal(after.codeName, "endpoint_access_forbidden");
  });

  await t.step("allowed_functions in the registration metadata become the allow-list", async () => {
    const reg2 = await alice.registerEndpoint("ep-two", {
      metadata: { allowed_functions: [fnId] },
    });
    const listed = await api(base, "GET", `/v2/endpoints/${reg2.endpoint_id}/whitelist`, { token });
    assert.deepEqual(listed.body["functions"], [fnId]);
    const other = await alice.registerFunction((x: number) => x);
    const refused = await alice.run(other, reg2.endpoint_id).then(() => undefined, (e) => e);
    assert.equal(refused.codeName, "function_not_permitted");
    const bad = await alice.registerEndpoint("ep-three", { metadata: { allowed_functions: ["x"] } })
      .then(() => undefined, (e) => e);
    assert.equal(bad.codeName, "invalid_uuid");
    await alice.deleteEndpoint(reg2.endpoint_id);
  });

  await t.step("unknown fields in a registration are refused", async () => {
    const res = await api(base, "POST", "/v2/endpoints", {
      token,
      json: { endpoint_name: "x", endpont_uuid: crypto.randomUUID() },
    });
    assert.equal(res.status, 400);
    assert.equal(envelopeCode(res), "bad_request");
  });

  await t.step("lock: registration is 423 while locked; delete: 410 forever", async () => {
    const locked = await alice.lockEndpoint(epId, { seconds: 600 });
    assert.ok(locked.locked_until > Date.now() / 1000);
    const e = await alice.registerEndpoint("ep-one", { endpointId: epId }).then(
      () => undefined,
      (x) => x,
    );
    assert.ok(e instanceof FuncxAPIError);
    assert.equal(e.httpStatus, 423);
    assert.equal(e.codeName, "endpoint_locked");
    await alice.deleteEndpoint(epId);
    const gone = await alice.registerEndpoint("ep-one", { endpointId: epId }).then(
      () => undefined,
      (x) => x,
    );
    assert.equal(gone.httpStatus, 410);
    assert.equal(gone.codeName, "endpoint_deleted");
    assert.deepEqual(await alice.getEndpoints(), []);
  });
}

async function tokenFor(base: string, id: string, secret: string): Promise<string> {
  const res = await api(base, "POST", "/v2/oauth/token", {
    form: { grant_type: "client_credentials", client_id: id, client_secret: secret },
  });
  return String(res.body["access_token"]);
}
