/**
 * A multi-user endpoint for real: local accounts made with `useradd`, a world-readable install
 * of the endpoint built as a site would, the real service and broker, and a multi-user endpoint
 * started as root that runs each service user's tasks in a user endpoint under that user's
 * account. Needs root (CI runs as root).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { stringify as stringifyYaml } from "yaml";
import { FuncXClient, FuncXExecutor, TaskExecutionFailed } from "../mod.ts";
import { serviceEnv, until } from "./_endpoint_helpers.ts";
import { runDeno, spawnDeno } from "./harness/process.ts";
import { api } from "./harness/http.ts";
import { waitForResult } from "./harness/wait.ts";
import { buildSiteInstall, createAccounts, removeLeftoverAccounts } from "./harness/site.ts";
import type { AuditRecord } from "../endpoint/audit_log.ts";

const isRoot = Deno.uid() === 0;

/** What a task sees of itself: who it runs as, where, and what it can reach. */
const whoAmI = async (otherHome: string, marker: string) => {
  const home = Deno.env.get("HOME") ?? "";
  await Deno.writeTextFile(`${home}/${marker}`, "written by a task");
  let other = "readable";
  try {
    for await (const _ of Deno.readDir(otherHome)) break;
  } catch (err) {
    other = (err as Error).name;
  }
  return {
    uid: Deno.uid(),
    gid: Deno.gid(),
    home,
    cwd: Deno.cwd(),
    user: Deno.env.get("USER"),
    other,
    file: `${home}/${marker}`,
    leaked: Deno.env.get("FUNCX_SDK_CLIENT_SECRET") ?? null,
  };
};

/**
 * The pid of the user endpoint running this task: the worker's parent, whose engine runs the
 * local block's manager in process.
 */
const userEndpointPid = (_tag: string) => ({ pid: Deno.ppid, uid: Deno.uid() });

/** First run: writes its pid into `~/<marker>` and hangs; a later run returns "retried". */
const lostOnce = async (marker: string) => {
  const file = `${Deno.env.get("HOME")}/${marker}`;
  const seen = await Deno.stat(file).then(() => true, () => false);
  if (seen) return "retried";
  await Deno.writeTextFile(file, String(Deno.pid));
  return await new Promise<string>(() => {});
};

async function clientFor(
  service: { address: string; dbPath: string },
  user: string,
): Promise<FuncXClient> {
  const creds = JSON.parse(
    await runDeno("cli/funcx_service.ts", [
      "client",
      "create",
      "--database",
      service.dbPath,
      "--user",
      user,
    ]),
  );
  return new FuncXClient({
    serviceAddress: service.address,
    clientId: creds.client_id,
    clientSecret: creds.client_secret,
  });
}

async function remoteError(p: PromiseLike<unknown>): Promise<{ name: string; message: string }> {
  const err = await Promise.resolve(p).then(() => undefined, (e) => e);
  assert.ok(err instanceof TaskExecutionFailed, `expected a task failure, got ${String(err)}`);
  return err.remote;
}

Deno.test({
  name: "multi-user endpoint: tasks run as their users' accounts, with mapping, templates, " +
    "idle stop, audit log and retries",
  ignore: !isRoot,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await removeLeftoverAccounts();
  await using users = await createAccounts(2);
  const [A, B] = users.accounts as [typeof users.accounts[0], typeof users.accounts[0]];
  await using install = await buildSiteInstall();
  await using s = await serviceEnv();

  assert.equal((await s.cli(["configure", "site", "--multi-user"])).code, 0);
  const dir = join(s.configDir, "site");
  // User endpoints start through a wrapper that waits 3 s while a marker file exists: a task can
  // then be cancelled for certain while its user endpoint starts.
  const slowDir = await Deno.makeTempDir({ prefix: "funcx-mu-slow-" });
  await Deno.chmod(slowDir, 0o755);
  const slowMarker = join(slowDir, "slow");
  const wrapper = join(slowDir, "start.sh");
  await Deno.writeTextFile(wrapper, `if [ -e "${slowMarker}" ]; then sleep 3; fi\nexec "$@"\n`);
  await Deno.chmod(wrapper, 0o755);
  await using _slow = {
    [Symbol.asyncDispose]: () => Deno.remove(slowDir, { recursive: true }).catch(() => {}),
  };
  await Deno.writeTextFile(
    join(dir, "config.yaml"),
    stringifyYaml({
      heartbeat_period: 1,
      multi_user: true,
      audit_log: "audit.log",
      user_endpoints: {
        idle_timeout: 3,
        command: ["/bin/sh", wrapper, ...install.command],
        env: install.env,
      },
    }),
  );
  await Deno.writeTextFile(
    join(dir, "identity_mapping.yaml"),
    stringifyYaml({
      rules: [
        { user: "alice", account: A.name },
        { user: "bob", account: B.name },
        { user: "dave", account: "nosuchaccount7" },
        { user: "rooty", account: "root" },
      ],
    }),
  );
  await Deno.writeTextFile(
    join(dir, "user_config_template.yaml"),
    [
      "engine:",
      "  max_workers_per_node: {{ workers | default(1) }}",
      "  max_retries_on_system_failure: {{ retries | default(0) }}",
      "  heartbeat_period: 1",
      "",
    ].join("\n"),
  );
  await Deno.writeTextFile(
    join(dir, "user_config_schema.json"),
    JSON.stringify({
      type: "object",
      properties: {
        workers: { type: "integer", minimum: 1, maximum: 4 },
        retries: { type: "integer", minimum: 0, maximum: 2 },
      },
      additionalProperties: false,
    }),
  );

  const mep = await spawnDeno("cli/funcx_endpoint.ts", ["start", "site", "--foreground"], {
    env: s.env,
    logFile: join(s.dir, "site.log"),
    readyEvent: "started",
  });
  await using _mep = { [Symbol.asyncDispose]: async () => void await mep.stop() };
  const endpointId = String(mep.ready["endpoint_id"]);

  const token = String(
    (await api(s.service.address, "POST", "/v2/oauth/token", {
      form: {
        grant_type: "client_credentials",
        client_id: s.service.clientId,
        client_secret: s.service.clientSecret,
      },
    })).body["access_token"],
  );
  const [alice, bob, carol, dave, rooty] = await Promise.all(
    ["alice", "bob", "carol", "dave", "rooty"].map((u) => clientFor(s.service, u)),
  ) as [FuncXClient, FuncXClient, FuncXClient, FuncXClient, FuncXClient];
  const shared = await api(s.service.address, "POST", `/v2/endpoints/${endpointId}/users`, {
    token,
    json: { users: ["alice", "bob", "carol", "dave", "rooty"] },
  });
  assert.equal(shared.status, 200, JSON.stringify(shared.body));

  /** What the audit log must hold, by task id, in order. */
  const expected = new Map<string, Array<Partial<AuditRecord>>>();
  const ran = (user: string, account: string, outcome = "success", runs = 1) => [
    { event: "received" as const, user, local_user: account },
    ...Array.from({ length: runs }, () => ({
      event: "running" as const,
      user,
      local_user: account,
    })),
    {
      event: "finished" as const,
      user,
      local_user: account,
      outcome,
      ...(runs > 1 ? { attempts: runs } : {}),
    },
  ];
  const refused = (user: string, account: string | null, code: string) => [
    { event: "received" as const, user, local_user: account },
    { event: "finished" as const, user, local_user: account, outcome: `failed: ${code}` },
  ];

  await t.step(
    "each task runs with its user's uid, gid, home and a clean environment",
    async () => {
      await using fxA = new FuncXExecutor({ endpointId, client: alice });
      await using fxB = new FuncXExecutor({ endpointId, client: bob });
      const fa = fxA.submit(whoAmI, B.home, "from-alice");
      const fb = fxB.submit(whoAmI, A.home, "from-bob");
      const [ra, rb] = await Promise.all([fa, fb]);
      for (const [r, acct] of [[ra, A], [rb, B]] as const) {
        assert.equal(r.uid, acct.uid);
        assert.equal(r.gid, acct.gid);
        assert.equal(r.home, acct.home);
        assert.equal(r.cwd, acct.home);
        assert.equal(r.user, acct.name);
        assert.equal(r.other, "PermissionDenied", "a task read the other user's home");
        assert.equal(r.leaked, null, "the administrator's environment reached a task");
        assert.equal((await Deno.stat(r.file)).uid, acct.uid);
      }
      expected.set(fa.taskId!, ran("alice", A.name));
      expected.set(fb.taskId!, ran("bob", B.name));
    },
  );

  await t.step(
    "a user with no usable mapping is refused with the reason; nothing runs",
    async () => {
      const cases: Array<[FuncXClient, string, RegExp]> = [
        [carol, "carol", /Service user "carol" is not mapped to a local account/],
        [dave, "dave", /local account "nosuchaccount7", which does not exist/],
        [rooty, "rooty", /local account "root" \(uid 0\): tasks do not run as root/],
      ];
      for (const [client, user, why] of cases) {
        await using fx = new FuncXExecutor({ endpointId, client });
        const f = fx.submit(whoAmI, "/", "never");
        const err = await remoteError(f);
        assert.equal(err.name, "IdentityMappingFailed");
        assert.match(err.message, why);
        expected.set(f.taskId!, refused(user, null, "IdentityMappingFailed"));
      }
      const report = await until("a status report", async () => {
        const st = await s.client.getEndpointStatus(endpointId);
        return st.logs[0];
      });
      const ues = report["user_endpoints"] as Array<{ users: string[] }>;
      assert.ok(Array.isArray(ues));
      for (const ue of ues) {
        for (const u of ["carol", "dave", "rooty"]) assert.ok(!ue.users.includes(u));
      }
    },
  );

  await t.step(
    "template values outside the schema are refused before anything starts",
    async () => {
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ workers: 99 }, /field "workers": 99 is above 4/],
        [{ workers: "two" }, /field "workers": expected an integer, got "two"/],
        [{ partition: "debug" }, /field "partition": is not allowed on this endpoint/],
      ];
      for (const [values, why] of cases) {
        await using fx = new FuncXExecutor({
          endpointId,
          client: alice,
          userEndpointConfig: values,
        });
        const f = fx.submit(whoAmI, "/", "never");
        const err = await remoteError(f);
        assert.equal(err.name, "UserEndpointConfigInvalid");
        assert.match(err.message, why);
        expected.set(f.taskId!, refused("alice", A.name, "UserEndpointConfigInvalid"));
      }
      // A batch sends its values with each of its tasks.
      const batch = alice.createBatch({ userEndpointConfig: { workers: 99 } });
      batch.add(await alice.registerFunction(whoAmI), endpointId, ["/", "never"]);
      const [id] = await alice.batchRun(batch);
      const err = await remoteError(waitForResult(alice, id!));
      assert.equal(err.name, "UserEndpointConfigInvalid");
      assert.match(err.message, /field "workers": 99 is above 4/);
      expected.set(id!, refused("alice", A.name, "UserEndpointConfigInvalid"));
    },
  );

  let uePids: number[] = [];
  await t.step(
    "different values get different user endpoints; the same values reuse one",
    async () => {
      await using two = new FuncXExecutor({
        endpointId,
        client: alice,
        userEndpointConfig: { workers: 2 },
      });
      await using one = new FuncXExecutor({
        endpointId,
        client: alice,
        userEndpointConfig: { workers: 1 },
      });
      const f2 = two.submit(userEndpointPid, "a");
      const f1 = one.submit(userEndpointPid, "b");
      const fs = [f2, f1];
      const r2 = await f2;
      const r1 = await f1;
      const again = two.submit(userEndpointPid, "c");
      const r2b = await again;
      assert.notEqual(r2.pid, r1.pid);
      assert.equal(r2b.pid, r2.pid);
      assert.equal(r1.uid, A.uid);
      assert.equal(r2.uid, A.uid);
      for (const f of [...fs, again]) expected.set(f.taskId!, ran("alice", A.name));
      uePids = [r1.pid, r2.pid];
      const report = await until("both user endpoints in a status report", async () => {
        const st = await s.client.getEndpointStatus(endpointId);
        const ues = (st.logs[0]?.["user_endpoints"] ?? []) as Array<
          { pid: number; local_user: string; values: Record<string, unknown> }
        >;
        return uePids.every((p) => ues.some((u) => u.pid === p)) && ues;
      });
      const listed = report.filter((u) => uePids.includes(u.pid));
      assert.deepEqual(
        listed.map((u) => [u.local_user, u.values["workers"]]).sort(),
        [[A.name, 1], [A.name, 2]],
      );
    },
  );

  await t.step("a task cancelled while its user endpoint starts never runs", async () => {
    await Deno.writeTextFile(slowMarker, "");
    await using fx = new FuncXExecutor({
      endpointId,
      client: alice,
      userEndpointConfig: { workers: 3 },
    });
    const f = fx.submit(whoAmI, "/", "cancelled-while-starting");
    const taskId = await until("the task sent", () => f.taskId);
    await until("the endpoint to hold the task", async () => {
      const st = await s.client.getEndpointStatus(endpointId);
      const ues = (st.logs[0]?.["user_endpoints"] ?? []) as Array<
        { state: string; values: Record<string, unknown> }
      >;
      return ues.some((u) => u.state === "starting" && u.values["workers"] === 3);
    });
    assert.ok(f.cancel());
    await Deno.remove(slowMarker);
    // The next task of that user endpoint runs once it is up; the cancelled one came before it.
    const next = fx.submit(whoAmI, "/", "after-the-cancel");
    assert.equal((await next).uid, A.uid);
    await Deno.stat(join(A.home, "cancelled-while-starting")).then(
      () => assert.fail("the cancelled task ran"),
      (err) => assert.ok(err instanceof Deno.errors.NotFound),
    );
    expected.set(taskId, refused("alice", A.name, "TaskCancelled"));
    expected.set(next.taskId!, ran("alice", A.name));
  });

  await t.step("an idle user endpoint stops, and leaves the status report", async () => {
    await until("the idle user endpoints to exit", () =>
      uePids.every((p) => {
        try {
          Deno.statSync(`/proc/${p}`);
          return false;
        } catch {
          return true;
        }
      }), 30);
    await until("the status report to drop them", async () => {
      const st = await s.client.getEndpointStatus(endpointId);
      const ues = (st.logs[0]?.["user_endpoints"] ?? []) as Array<{ pid: number }>;
      return ues.every((u) => !uePids.includes(u.pid));
    }, 15);
  });

  await t.step(
    "a task whose worker is killed succeeds on its retry when retries are on",
    async () => {
      await using fx = new FuncXExecutor({
        endpointId,
        client: alice,
        userEndpointConfig: { retries: 1 },
      });
      const f = fx.submit(lostOnce, "lost-once");
      const marker = join(A.home, "lost-once");
      const pid = await until("the first attempt to start", async () => {
        const text = await Deno.readTextFile(marker).catch(() => "");
        return text ? Number(text) : undefined;
      });
      Deno.kill(pid, "SIGKILL");
      assert.equal(await f, "retried");
      // The result reaches the SDK straight from the endpoint; the store may take a moment more.
      const info = await until("the stored result", async () => {
        const t = await alice.getTask(f.taskId!);
        return t.pending ? undefined : t;
      });
      const transitions = (info as unknown as { task_transitions?: Array<{ state: string }> })
        .task_transitions ?? [];
      assert.equal(transitions.filter((x) => x.state === "running").length, 2);
      expected.set(f.taskId!, ran("alice", A.name, "success", 2));
    },
  );

  await t.step("with retries off the same loss fails the task with WorkerLost", async () => {
    await using fx = new FuncXExecutor({ endpointId, client: bob });
    const f = fx.submit(lostOnce, "lost-for-good");
    const marker = join(B.home, "lost-for-good");
    const pid = await until("the task to start", async () => {
      const text = await Deno.readTextFile(marker).catch(() => "");
      return text ? Number(text) : undefined;
    });
    Deno.kill(pid, "SIGKILL");
    const err = await remoteError(f);
    assert.equal(err.name, "WorkerLost");
    assert.match(err.message, /died with signal SIGKILL/);
    expected.set(f.taskId!, ran("bob", B.name, "failed: WorkerLost"));
  });

  /** The pid of the user endpoint of `account` with `values` that holds a task. */
  const busyUserEndpoint = (account: string, values: Record<string, unknown>) =>
    until("the busy user endpoint in a status report", async () => {
      const st = await s.client.getEndpointStatus(endpointId);
      const ues = (st.logs[0]?.["user_endpoints"] ?? []) as Array<
        { pid: number; local_user: string; values: Record<string, unknown>; tasks: number }
      >;
      return ues.find((u) =>
        u.local_user === account && u.tasks > 0 &&
        Object.entries(values).every(([k, v]) => u.values[k] === v)
      )?.pid;
    });

  await t.step(
    "a task whose user endpoint is killed runs again in a new one when retries are on",
    async () => {
      await using fx = new FuncXExecutor({
        endpointId,
        client: alice,
        userEndpointConfig: { retries: 1 },
      });
      const f = fx.submit(lostOnce, "ue-lost-once");
      await until(
        "the first attempt to start",
        () => Deno.readTextFile(join(A.home, "ue-lost-once")).catch(() => false),
      );
      const pid = await busyUserEndpoint(A.name, { retries: 1 });
      Deno.kill(pid, "SIGKILL");
      assert.equal(await f, "retried");
      expected.set(f.taskId!, [
        { event: "received", user: "alice", local_user: A.name },
        { event: "running", user: "alice", local_user: A.name },
        { event: "finished", user: "alice", local_user: A.name, outcome: "success", attempts: 2 },
      ]);
    },
  );

  await t.step(
    "with retries off a killed user endpoint fails its task with ManagerLost",
    async () => {
      await using fx = new FuncXExecutor({ endpointId, client: bob });
      const f = fx.submit(lostOnce, "ue-lost-for-good");
      await until(
        "the task to start",
        () => Deno.readTextFile(join(B.home, "ue-lost-for-good")).catch(() => false),
      );
      const pid = await busyUserEndpoint(B.name, {});
      Deno.kill(pid, "SIGKILL");
      const err = await remoteError(f);
      assert.equal(err.name, "ManagerLost");
      assert.match(err.message, new RegExp(`user endpoint of local account "${B.name}" was lost`));
      expected.set(f.taskId!, [
        { event: "received", user: "bob", local_user: B.name },
        { event: "finished", user: "bob", local_user: B.name, outcome: "failed: ManagerLost" },
      ]);
    },
  );

  await t.step(
    "a typo in the mapping refuses tasks naming file and field; fixed, tasks run",
    async () => {
      const file = join(dir, "identity_mapping.yaml");
      const good = await Deno.readTextFile(file);
      await Deno.writeTextFile(file, good.replace("account:", "acount:"));
      await using fx = new FuncXExecutor({ endpointId, client: alice });
      const f = fx.submit(whoAmI, "/", "never");
      const err = await remoteError(f);
      assert.equal(err.name, "IdentityMappingFailed");
      assert.match(err.message, /unknown field "rules\.0\.acount"/);
      assert.ok(err.message.includes(file), err.message);
      expected.set(f.taskId!, refused("alice", null, "IdentityMappingFailed"));
      assert.equal(
        await Promise.race([mep.status.then(() => "exited"), Promise.resolve("up")]),
        "up",
      );
      await Deno.writeTextFile(file, good);
      const again = fx.submit(whoAmI, B.home, "after-fix");
      assert.equal((await again).uid, A.uid);
      expected.set(again.taskId!, ran("alice", A.name));
    },
  );

  await t.step("the audit log has exactly the expected lines, mode 0600, no data", async () => {
    const file = join(dir, "audit.log");
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    const text = await Deno.readTextFile(file);
    const lines = text.trim().split("\n").map((l) => JSON.parse(l) as AuditRecord);
    const byTask = new Map<string, AuditRecord[]>();
    for (const l of lines) {
      assert.equal(l.endpoint_id, endpointId);
      assert.ok(!Number.isNaN(Date.parse(l.time)));
      assert.equal(typeof l.function_id, "string");
      byTask.set(l.task_id, [...(byTask.get(l.task_id) ?? []), l]);
    }
    assert.deepEqual([...byTask.keys()].sort(), [...expected.keys()].sort());
    for (const [taskId, want] of expected) {
      const got = (byTask.get(taskId) ?? []).map((l) => {
        const { time: _t, endpoint_id: _e, task_id: _i, function_id: _f, ...rest } = l;
        return rest;
      });
      assert.deepEqual(got, want, `audit lines of task ${taskId}`);
    }
    // Arguments and results never reach it.
    for (const secret of ["from-alice", "after-fix", "lost-once", "retried", "written by a task"]) {
      assert.ok(!text.includes(secret), `the audit log holds "${secret}"`);
    }
  });
});

Deno.test({
  name: "configure --multi-user writes the site files; start refuses a bad mapping naming it",
  ignore: !isRoot,
}, async () => {
  await using s = await serviceEnv();
  const made = await s.cli(["configure", "site", "--multi-user"]);
  assert.equal(made.code, 0, made.stderr);
  const dir = join(s.configDir, "site");
  for (
    const f of ["identity_mapping.yaml", "user_config_template.yaml", "user_config_schema.json"]
  ) {
    assert.ok(made.stdout.includes(join(dir, f)), made.stdout);
    assert.equal((await Deno.stat(join(dir, f))).mode! & 0o777, 0o600);
  }
  assert.match(await Deno.readTextFile(join(dir, "config.yaml")), /^multi_user: true$/m);
  await Deno.writeTextFile(join(dir, "identity_mapping.yaml"), "rules:\n  - user: ann\n");
  const started = await s.cli(["start", "site", "--foreground"]);
  assert.equal(started.code, 65, started.stderr);
  assert.match(started.stderr, /identity_mapping\.yaml/);
  assert.match(started.stderr, /field "rules\.0\.account"/);
});
