/**
 * The store contract: the same steps against SQLite (a WAL file) and PostgreSQL (a database of
 * its own on the test run's node), so both implementations of `Store` behave alike, including
 * the races that several service replicas bring (token rotation, device codes, task completion,
 * idempotency reservations), run here as concurrent calls.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { TaskState } from "../sdk/protocol/mod.ts";
import { nowNs } from "../sdk/protocol/mod.ts";
import { testDatabase } from "./harness/postgres.ts";
import { openStore } from "../service/open_store.ts";
import {
  type NewTask,
  type Store,
  StoreUnavailableError,
  type TaskCompletion,
} from "../service/store.ts";
import {
  createClient,
  issueClientToken,
  pollDeviceToken,
  refreshToken,
  sha256Hex,
  startDeviceAuthorization,
} from "../service/auth.ts";

const TTL = { accessTtlS: 60, refreshTtlS: 600 };
const TASK_TTL_S = 3600;

/** A user with an API client, made the way `funcx-service client create` makes them. */
async function contractUser(store: Store, name: string) {
  const creds = await createClient(store, name);
  const user = (await store.userByName(name))!;
  return { user: { id: user.id, name }, clientId: creds.client_id, secret: creds.client_secret };
}

function completion(taskId: string, data: string, ts: bigint): TaskCompletion {
  return {
    taskId,
    status: "success",
    data,
    errorCode: null,
    completionT: Date.now() / 1000,
    transitions: [{ state: TaskState.EXECUTION_END, actor: "worker", timestamp: ts }],
  };
}

async function addTasksOrThrow(store: Store, owner: string, group: string, tasks: NewTask[]) {
  assert.notEqual(await store.addTasks(owner, group, tasks), false, "addTasks refused");
}

function settledCounts(outcomes: PromiseSettledResult<unknown>[]) {
  const fulfilled = outcomes.filter((o) => o.status === "fulfilled").length;
  return { fulfilled, rejected: outcomes.length - fulfilled };
}

async function contract(t: Deno.TestContext, store: Store): Promise<void> {
  const alice = await contractUser(store, "alice");
  const bob = await contractUser(store, "bob");

  await t.step("users: ensureUser is idempotent; names and password hashes", async () => {
    assert.deepEqual(await store.ensureUser("alice"), alice.user);
    const [a, b] = await Promise.all([store.ensureUser("carol"), store.ensureUser("carol")]);
    assert.equal(a.id, b.id, "two racing ensureUser calls made two users");
    assert.deepEqual((await store.listUsers()).map((u) => u.name), ["alice", "bob", "carol"]);
    assert.equal((await store.userByName("carol"))?.passwordHash, null);
    await store.setPassword(a.id, "pbkdf2$x");
    assert.equal((await store.userByName("carol"))?.passwordHash, "pbkdf2$x");
    assert.equal(await store.userByName("nobody"), undefined);
  });

  await t.step("clients and access tokens", async () => {
    const got = await store.getClient(alice.clientId);
    assert.equal(got?.userId, alice.user.id);
    assert.equal(await store.getClient("no-such-client"), undefined);
    const token = await issueClientToken(store, alice.clientId, alice.secret, TTL);
    const hash = await sha256Hex(token.access_token);
    const now = Date.now() / 1000;
    const user = await store.userForToken(hash, now);
    assert.equal(user?.name, "alice");
    assert.equal(user?.clientId, alice.clientId);
    assert.equal(await store.userForToken(hash, now, "refresh"), undefined, "kind is checked");
    assert.equal(await store.userForToken(hash, now + 61), undefined, "expiry is checked");
    assert.equal(await store.deleteToken(hash), true);
    assert.equal(await store.deleteToken(hash), false);
    assert.equal(await store.userForToken(hash, now), undefined);
  });

  await t.step("refresh token rotation: of two racing refreshes exactly one wins", async () => {
    const now = Date.now() / 1000;
    for (let round = 0; round < 5; round++) {
      const refresh = `refresh-${round}-${crypto.randomUUID()}`;
      await store.addToken(await sha256Hex(refresh), alice.user.id, null, now + 600, "refresh");
      const outcomes = await Promise.allSettled([
        refreshToken(store, refresh, TTL),
        refreshToken(store, refresh, TTL),
      ]);
      const { fulfilled, rejected } = settledCounts(outcomes);
      assert.equal(fulfilled, 1, `round ${round}: ${fulfilled} refreshes won`);
      assert.equal(rejected, 1);
      const loser = outcomes.find((o) => o.status === "rejected") as PromiseRejectedResult;
      assert.equal(loser.reason.toJSON().error_args[0], "invalid_grant");
    }
  });

  await t.step("device codes: polls record the previous poll; one racing poll wins", async () => {
    const start = await startDeviceAuthorization(store, "funcx-cli", "http://x", {
      expiresInS: 600,
      intervalS: 0,
    });
    const hash = await sha256Hex(start.device_code);
    assert.equal((await store.deviceCodeByUserCode(start.user_code))?.hash, hash);
    assert.equal(await store.pollDeviceCode(hash, 100), 0);
    assert.equal(await store.pollDeviceCode(hash, 105), 100);
    assert.equal(await store.pollDeviceCode("no-such-code", 105), 0);
    await store.decideDeviceCode(hash, "approved", alice.user.id);
    await store.decideDeviceCode(hash, "denied", bob.user.id); // only a pending code is decided
    const rec = await store.deviceCode(hash);
    assert.equal(rec?.status, "approved");
    assert.equal(rec?.userId, alice.user.id);
    const outcomes = await Promise.allSettled([
      pollDeviceToken(store, start.device_code, TTL, 0),
      pollDeviceToken(store, start.device_code, TTL, 0),
    ]);
    assert.equal(settledCounts(outcomes).fulfilled, 1, "both polls got tokens");
    assert.equal(await store.deviceCode(hash), undefined);
  });

  await t.step("functions and containers: stored and read back", async () => {
    const container = {
      id: crypto.randomUUID(),
      ownerId: alice.user.id,
      name: "py",
      description: "an image",
      type: "apptainer",
      location: "/images/py.sif",
      createdAt: 1_700_000_000.5,
    };
    await store.addContainer(container);
    assert.deepEqual(await store.getContainer(container.id), container);
    assert.equal(await store.getContainer(crypto.randomUUID()), undefined);
    const fn = {
      id: crypto.randomUUID(),
      ownerId: alice.user.id,
      name: "double",
      code: "00\nx => 2 * x",
      description: "doubles",
      public: true,
      containerId: null,
      createdAt: 1_700_000_000.123456,
    };
    await store.addFunction(fn);
    assert.deepEqual(await store.getFunction(fn.id), fn);
    assert.equal(await store.getFunction(crypto.randomUUID()), undefined);
    const inImage = { ...fn, id: crypto.randomUUID(), containerId: container.id };
    await store.addFunction(inImage);
    assert.deepEqual(await store.getFunction(inImage.id), inImage);
  });

  const epId = crypto.randomUUID();
  await t.step("endpoints: ownership decided by the write; lock; share", async () => {
    const ep = { id: epId, ownerId: alice.user.id, name: "ep", metadata: { cores: 4 } };
    assert.equal(await store.upsertEndpoint(ep), true);
    assert.equal(await store.upsertEndpoint({ ...ep, name: "ep2" }), true);
    assert.equal(await store.upsertEndpoint({ ...ep, ownerId: bob.user.id }), false);
    const got = await store.getEndpoint(epId);
    assert.equal(got?.name, "ep2");
    assert.equal(got?.ownerId, alice.user.id);
    assert.deepEqual(got?.metadata, { cores: 4 });
    assert.equal(got?.deleted, false);
    assert.deepEqual((await store.listEndpoints(alice.user.id)).map((e) => e.id), [epId]);
    assert.deepEqual(await store.listEndpoints(bob.user.id), []);
    await store.lockEndpoint(epId, 12345.5);
    assert.equal((await store.getEndpoint(epId))?.lockedUntil, 12345.5);

    assert.equal(await store.isSharedWith(epId, bob.user.id), false);
    await store.shareEndpoint(epId, [bob.user.id, bob.user.id]);
    assert.equal(await store.isSharedWith(epId, bob.user.id), true);
    assert.deepEqual(await store.sharedWith(epId), ["bob"]);
    assert.equal(await store.unshareEndpoint(epId, bob.user.id), true);
    assert.equal(await store.unshareEndpoint(epId, bob.user.id), false);
    assert.deepEqual(await store.sharedWith(epId), []);
  });

  await t.step("endpoints: allow-list add, replace, remove; delete is final", async () => {
    const [f1, f2, f3] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()].sort();
    await store.addToWhitelist(epId, [f2!, f1!, f2!]);
    assert.deepEqual(await store.whitelist(epId), [f1, f2]);
    await Promise.all([
      store.replaceWhitelist(epId, [f3!]),
      store.replaceWhitelist(epId, [f3!]),
    ]);
    assert.deepEqual(await store.whitelist(epId), [f3]);
    assert.equal(await store.removeFromWhitelist(epId, f3!), true);
    assert.equal(await store.removeFromWhitelist(epId, f3!), false);
    await store.addToWhitelist(epId, [f1!]);
    const other = crypto.randomUUID();
    await store.upsertEndpoint({ id: other, ownerId: alice.user.id, name: "gone", metadata: {} });
    await store.addToWhitelist(other, [f1!]);
    await store.deleteEndpoint(other);
    assert.equal((await store.getEndpoint(other))?.deleted, true);
    assert.deepEqual(await store.whitelist(other), []);
    assert.deepEqual(await store.whitelist(epId), [f1], "another endpoint's list is untouched");
    assert.equal(
      await store.upsertEndpoint({ id: other, ownerId: alice.user.id, name: "x", metadata: {} }),
      false,
      "a deleted endpoint was registered again",
    );
    assert.deepEqual((await store.listEndpoints(alice.user.id)).map((e) => e.id), [epId]);
  });

  await t.step("endpoint status: the newest report, live until it expires", async () => {
    assert.equal(await store.endpointStatus(epId, 1000), undefined);
    await store.applyResults({
      updates: [],
      completions: [],
      statuses: [
        { endpointId: epId, state: { total_workers: 1 }, expiresAt: 1060 },
        { endpointId: epId, state: { total_workers: 2, big: 5n }, expiresAt: 1070 },
      ],
    });
    const live = await store.endpointStatus(epId, 1000);
    assert.deepEqual(live?.state, { total_workers: 2, big: "5" });
    assert.equal(live?.expiresAt, 1070);
    assert.equal(await store.endpointStatus(epId, 1070), undefined);
  });

  const groupId = crypto.randomUUID();
  const ids = Array.from({ length: 6 }, () => crypto.randomUUID());
  await t.step("tasks: a group is its creator's; tasks read back", async () => {
    const fid = crypto.randomUUID();
    await addTasksOrThrow(store, alice.user.id, groupId, ids.map((id) => task(id, fid)));
    assert.equal(await store.taskGroupOwner(groupId), alice.user.id);
    assert.equal(await store.taskGroupOwner(crypto.randomUUID()), undefined);
    assert.equal(
      await store.addTasks(bob.user.id, groupId, [task(crypto.randomUUID(), fid)]),
      false,
      "tasks were added to another user's group",
    );
    assert.deepEqual([...await store.taskGroupTasks(groupId)].sort(), [...ids].sort());
    const t0 = await store.getTask(ids[0]!);
    assert.equal(t0?.status, "waiting-for-ep");
    assert.equal(t0?.ownerId, alice.user.id);
    assert.equal(t0?.endpointId, epId);
    assert.equal(t0?.result, null);
    assert.equal(t0?.completionT, null);
    assert.ok(Math.abs(t0!.expiresAt - t0!.createdAt - TASK_TTL_S) < 1e-3);
    assert.equal(await store.getTask(crypto.randomUUID()), undefined);

    assert.equal(await store.resultQueueOf(ids[0]!), undefined);
    await store.setResultQueue(groupId, "user-x.q");
    assert.equal(await store.resultQueueOf(ids[0]!), "user-x.q");
    const queues = await store.resultQueuesOf([ids[0]!, ids[1]!, crypto.randomUUID()]);
    assert.deepEqual([...queues.values()], ["user-x.q", "user-x.q"]);
  });

  await t.step("tasks: states move forward; a result is stored once", async () => {
    await store.updateStatuses([
      { taskId: ids[0]!, status: TaskState.WAITING_FOR_LAUNCH },
      { taskId: ids[0]!, status: TaskState.RUNNING },
    ]);
    assert.equal((await store.getTask(ids[0]!))?.status, "running");
    const ts = nowNs();
    const first = completion(ids[0]!, "first", ts);
    assert.equal(await store.completeTasks([first, completion(ids[0]!, "second", ts)]), 1);
    assert.equal(await store.completeTasks([completion(ids[0]!, "third", ts)]), 0);
    const done = await store.getTask(ids[0]!);
    assert.equal(done?.status, "success");
    assert.equal(done?.result, "first");
    assert.equal(done?.transitions?.[0]?.timestamp, ts.toString(), "ns timestamp lost digits");
    await store.updateStatuses([{ taskId: ids[0]!, status: TaskState.RUNNING }]);
    assert.equal((await store.getTask(ids[0]!))?.status, "success", "a result was undone");

    const failed = { ...completion(ids[1]!, "boom", ts), status: "failed" as const };
    assert.equal(await store.completeTasks([{ ...failed, errorCode: "ZeroDivision" }]), 1);
    const f = await store.getTask(ids[1]!);
    assert.equal(f?.exception, "boom");
    assert.equal(f?.result, null);
    assert.equal(f?.errorCode, "ZeroDivision");
  });

  await t.step("tasks: overlapping concurrent batches store each result once", async () => {
    const rest = ids.slice(2);
    const a = rest.map((id) => completion(id, `a-${id}`, nowNs()));
    const b = [...rest].reverse().map((id) => completion(id, `b-${id}`, nowNs()));
    const changed = await Promise.all([
      store.applyResults({ updates: [], completions: a }),
      store.applyResults({ updates: [], completions: b }),
      store.applyResults({
        updates: rest.map((id) => ({ taskId: id, status: "running" })),
        completions: [],
      }),
    ]);
    assert.equal(changed[0]! + changed[1]!, rest.length);
    for (const id of rest) {
      const got = await store.getTask(id);
      assert.equal(got?.status, "success");
      assert.match(got!.result!, new RegExp(`^[ab]-${id}$`));
    }
  });

  await t.step("tasks: failTasks fails only incomplete tasks", async () => {
    const extra = crypto.randomUUID();
    await addTasksOrThrow(store, alice.user.id, groupId, [task(extra, crypto.randomUUID())]);
    await store.failTasks([extra, ids[0]!], "broker_unavailable", "no broker");
    assert.equal((await store.getTask(extra))?.errorCode, "broker_unavailable");
    assert.equal((await store.getTask(ids[0]!))?.status, "success");
  });

  await t.step("outbox: written with its task, once; leased, released, claimed once", async () => {
    const group = crypto.randomUUID();
    const fid = crypto.randomUUID();
    const withMessage = (id: string, byte: number): NewTask => ({
      ...task(id, fid),
      message: new Uint8Array([byte, 0, 255]),
    });
    const [a, b, c]: [string, string, string] = [
      crypto.randomUUID(),
      crypto.randomUUID(),
      crypto.randomUUID(),
    ];
    const before = await store.outboxSize();
    const now = Date.now() / 1000;
    const first = await store.addTasks(
      alice.user.id,
      group,
      [withMessage(a, 1), withMessage(b, 2)],
      {
        leaseUntil: now + 60,
      },
    );
    assert.deepEqual(first && first.map((t) => t.id), [a, b]);
    // A repeat of the same tasks (a submit run again) adds neither a task nor a message.
    const again = await store.addTasks(alice.user.id, group, [
      withMessage(a, 1),
      withMessage(c, 3),
    ]);
    assert.deepEqual(again && again.map((t) => t.id), [c]);
    assert.equal((await store.taskGroupTasks(group)).length, 3);
    assert.equal(await store.outboxSize(), before + 3);
    // Leased ones are not claimed; c (no lease) is, with its bytes intact, and only once.
    const claims = await Promise.all([
      store.claimOutbox(now, now + 60, 10),
      store.claimOutbox(now, now + 60, 10),
    ]);
    const claimed = claims.flat().filter((m) => ([a, b, c] as string[]).includes(m.taskId));
    assert.deepEqual(claimed.map((m) => m.taskId), [c]);
    assert.deepEqual([...claimed[0]!.body], [3, 0, 255]);
    assert.equal(claimed[0]!.endpointId, epId);
    await store.releaseOutbox([a, b]);
    const rest = (await store.claimOutbox(now, now + 60, 10)).filter((m) =>
      ([a, b, c] as string[]).includes(m.taskId)
    );
    assert.deepEqual(rest.map((m) => m.taskId).sort(), [a, b].sort());
    await store.deleteOutbox([a, b, c]);
    assert.equal(await store.outboxSize(), before);
  });

  const request = {
    userId: alice.user.id,
    key: "key-1",
    method: "POST",
    path: "/v2/submit",
    requestHash: "h1",
  };
  const times = { now: 1000, leaseS: 120, ttlS: 86400 };
  await t.step("idempotency: one reservation per user and key, even when racing", async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 6 }, () => store.reserveIdempotencyKey(request, times)),
    );
    const winners = outcomes.filter((o) => o.reserved);
    assert.equal(winners.length, 1, `${winners.length} reservations of one key`);
    const loser = outcomes.find((o) => !o.reserved);
    assert.ok(loser && !loser.reserved);
    assert.equal(loser.existing.state, "in_progress");
    assert.equal(loser.existing.requestHash, "h1");
    const hold = {
      userId: request.userId,
      key: request.key,
      token: winners[0]!.reserved ? winners[0]!.token : "",
    };
    const other = await store.reserveIdempotencyKey({ ...request, userId: bob.user.id }, times);
    assert.equal(other.reserved, true, "keys are per user");

    assert.equal(await store.finishIdempotencyKey(hold, { status: 200, body: '{"ok":1}' }), true);
    assert.equal(await store.finishIdempotencyKey(hold, { status: 500, body: "" }), false);
    const again = await store.reserveIdempotencyKey(request, { ...times, now: 5000 });
    assert.ok(!again.reserved);
    assert.equal(again.existing.state, "done");
    assert.equal(again.existing.responseStatus, 200);
    assert.equal(again.existing.responseBody, '{"ok":1}');
    const reused = await store.reserveIdempotencyKey({ ...request, requestHash: "h2" }, times);
    assert.ok(!reused.reserved, "a different request took over a finished key");
    assert.equal(reused.existing.requestHash, "h1");
  });

  await t.step("idempotency: release, lease takeover, expiry", async () => {
    const r = { ...request, key: "key-2" };
    const first = await store.reserveIdempotencyKey(r, times);
    assert.ok(first.reserved);
    await store.releaseIdempotencyKey({ userId: r.userId, key: r.key, token: first.token });
    const second = await store.reserveIdempotencyKey(r, times);
    assert.ok(second.reserved, "a released key could not be reserved again");

    const early = await store.reserveIdempotencyKey(r, { ...times, now: 1100 });
    assert.ok(!early.reserved, "taken over while its lease lasted");
    const otherBody = await store.reserveIdempotencyKey({ ...r, requestHash: "h9" }, {
      ...times,
      now: 1200,
    });
    assert.ok(!otherBody.reserved, "another request took over an abandoned attempt");
    const late = await store.reserveIdempotencyKey(r, { ...times, now: 1200 });
    assert.ok(late.reserved, "an abandoned attempt was not taken over");
    const stale = { userId: r.userId, key: r.key, token: second.token };
    assert.equal(await store.finishIdempotencyKey(stale, { status: 200, body: "{}" }), false);

    const expired = await store.reserveIdempotencyKey({ ...r, requestHash: "h3" }, {
      ...times,
      now: 1200 + 86400 + 1,
    });
    assert.ok(expired.reserved, "an expired key was not reusable");
  });

  await t.step(
    "purgeExpired deletes tasks, tokens, device codes and keys past expiry",
    async () => {
      await store.addToken(await sha256Hex("short"), alice.user.id, null, 10);
      await store.addDeviceCode("dc-hash", "ABCD-EFGH", "funcx-cli", 10);
      const counts = await store.purgeExpired(Date.now() / 1000 + TASK_TTL_S + 1);
      assert.ok(counts.tasks >= ids.length, `${counts.tasks} tasks purged`);
      assert.ok(counts.tokens >= 1);
      assert.equal(counts.deviceCodes, 1);
      assert.ok(counts.idempotencyKeys >= 1, "no idempotency key purged");
      assert.equal(await store.getTask(ids[0]!), undefined);
      assert.equal(await store.deviceCode("dc-hash"), undefined);
      const empty = await store.purgeExpired(Date.now() / 1000 + TASK_TTL_S + 1);
      assert.deepEqual(empty, { tasks: 0, tokens: 0, deviceCodes: 0, idempotencyKeys: 0 });
    },
  );

  function task(id: string, functionId: string) {
    return { id, functionId, endpointId: epId };
  }
}

Deno.test("store contract: SQLite", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-store-" });
  const store = await openStore(join(dir, "store.db"), { taskTtlS: TASK_TTL_S });
  try {
    assert.equal(store.kind, "sqlite");
    await contract(t, store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store contract: PostgreSQL", async (t) => {
  await using db = await testDatabase();
  const store = await openStore(db.url, { taskTtlS: TASK_TTL_S });
  try {
    assert.equal(store.kind, "postgres");
    await contract(t, store);
  } finally {
    await store.close();
  }
  // Opening again finds the tables there and keeps the data.
  const again = await openStore(db.url, { taskTtlS: TASK_TTL_S });
  try {
    assert.deepEqual((await again.listUsers()).map((u) => u.name), ["alice", "bob", "carol"]);
  } finally {
    await again.close();
  }
});

Deno.test("openStore: an unreachable or unusable database is a clear StoreUnavailableError", async () => {
  const port = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    l.close();
    return l.addr.port;
  })();
  const url = `postgres://funcx:s3cret-pw@127.0.0.1:${port}/nowhere`;
  const err = await openStore(url, { connectTimeoutS: 2 }).then(() => undefined, (e) => e);
  assert.ok(err instanceof StoreUnavailableError, String(err));
  assert.match(
    err.message,
    new RegExp(`postgres://funcx:\\*\\*\\*@127\\.0\\.0\\.1:${port}/nowhere`),
  );
  assert.doesNotMatch(err.message, /s3cret-pw/);
  assert.match(err.message, /check that PostgreSQL runs/);

  await using db = await testDatabase();
  const missing = db.url.replace(/\/[^/]+$/, "/no_such_database");
  const err2 = await openStore(missing).then(() => undefined, (e) => e);
  assert.ok(err2 instanceof StoreUnavailableError);
  assert.match(err2.message, /no_such_database.*does not exist/);

  const dir = await Deno.makeTempDir({ prefix: "funcx-store-" });
  try {
    const err3 = await openStore(join(dir, "missing-dir", "x.db")).then(() => undefined, (e) => e);
    assert.ok(err3 instanceof StoreUnavailableError);
    assert.match(err3.message, /Cannot open the SQLite database ".*missing-dir\/x\.db"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
