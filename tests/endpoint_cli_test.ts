/**
 * `funcx-endpoint` as a user runs it, against a real service and broker: configure, start as a
 * background daemon, list, stop (leaving no process behind), restart, stale pid files, bad
 * configs, missing credentials, delete.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { waitForResult } from "./harness/wait.ts";
import {
  fastConfig,
  processesMentioning,
  processGroup,
  serviceEnv,
  until,
  writeConfig,
} from "./_endpoint_helpers.ts";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

Deno.test("funcx-endpoint CLI: configure, start, list, stop, restart, delete", async (t) => {
  await using s = await serviceEnv();
  const epDir = join(s.configDir, "alpha");

  await t.step("list with nothing configured prints the hint", async () => {
    const r = await s.cli(["list"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /No endpoints configured!/);
    assert.match(r.stdout, /\(Hint: funcx-endpoint configure\)/);
    const json = await s.cli(["list", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { endpoints: [] });
  });

  await t.step("configure writes config.yaml and refuses to overwrite it", async () => {
    const r = await s.cli(["configure", "alpha"]);
    assert.equal(r.code, 0, r.stderr);
    const text = await Deno.readTextFile(join(epDir, "config.yaml"));
    assert.match(text, /heartbeat_period/);
    assert.equal((await Deno.stat(epDir)).mode! & 0o777, 0o700);
    await writeConfig(s.configDir, "alpha", fastConfig());
    const again = await s.cli(["configure", "alpha"]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already configured/);
    assert.match(await Deno.readTextFile(join(epDir, "config.yaml")), /reconnect_delay_min/);
    const list = await s.cli(["list"]);
    assert.match(list.stdout, /\| None +\| Initialized \| alpha/);
  });

  await t.step(
    "a typo or a wrong type in config.yaml names the field and file (exit 65)",
    async () => {
      assert.equal((await s.cli(["configure", "broken"])).code, 0);
      const file = join(s.configDir, "broken", "config.yaml");
      await writeConfig(s.configDir, "broken", "heartbeat_perod: 5\n");
      const typo = await s.cli(["start", "broken"]);
      assert.equal(typo.code, 65, typo.stderr);
      assert.match(typo.stderr, /heartbeat_perod/);
      assert.ok(typo.stderr.includes(file), typo.stderr);
      await writeConfig(s.configDir, "broken", "engine:\n  max_workers_per_node: two\n");
      const type = await s.cli(["start", "broken"]);
      assert.equal(type.code, 65, type.stderr);
      assert.match(type.stderr, /"engine\.max_workers_per_node"/);
      // Nothing was started or registered.
      assert.equal(processesMentioning(join(s.configDir, "broken")).length, 0);
      await Deno.stat(join(s.configDir, "broken", "endpoint.json")).then(
        () => assert.fail("endpoint.json was written"),
        (e) => assert.ok(e instanceof Deno.errors.NotFound),
      );
      assert.equal((await s.cli(["delete", "broken", "--yes"])).code, 0);
    },
  );

  await t.step("start without credentials says how to get them (exit 1)", async () => {
    const r = await s.cli(["start", "alpha"], {
      FUNCX_SDK_CLIENT_ID: "",
      FUNCX_SDK_CLIENT_SECRET: "",
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /funcx-service client create/);
  });

  let endpointId = "";
  let daemonPid = 0;
  await t.step("start detaches a daemon that runs tasks", async () => {
    const r = await s.cli(["start", "alpha"]);
    assert.equal(r.code, 0, r.stderr);
    const m = /Starting endpoint; registered ID: (\S+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    endpointId = m[1]!;
    assert.match(endpointId, UUID);
    // It says how many workers it runs and why that many.
    assert.match(r.stdout, /Workers: \d+ per block: \S/);
    const saved = JSON.parse(await Deno.readTextFile(join(epDir, "endpoint.json")));
    assert.equal(saved.endpoint_id, endpointId);
    daemonPid = Number(await Deno.readTextFile(join(epDir, "daemon.pid")));
    // The daemon leads its own session and process group.
    assert.ok(processGroup(daemonPid).includes(daemonPid));
    const list = await s.cli(["list"]);
    assert.match(list.stdout, new RegExp(`\\| ${endpointId} \\| Running +\\| alpha`));
    assert.deepEqual(JSON.parse((await s.cli(["list", "--json"])).stdout), {
      endpoints: [{ name: "alpha", endpoint_id: endpointId, status: "Running" }],
    });
    const fn = await s.client.registerFunction((x: number) => x * 3);
    assert.equal(
      await waitForResult(s.client, await s.client.run(fn, endpointId, { args: [14] })),
      42,
    );
    await until(
      "status online",
      async () => (await s.client.getEndpointStatus(endpointId)).status === "online",
    );
  });

  await t.step("a second start of a running endpoint says so", async () => {
    const r = await s.cli(["start", "alpha"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already running/);
  });

  await t.step("logout refuses while an endpoint runs", async () => {
    const r = await s.cli(["logout"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /running endpoints/);
  });

  await t.step("stop ends the daemon and every process it started", async () => {
    const members = processGroup(daemonPid);
    assert.ok(members.length > 1, `the daemon group has only ${members.length} processes`);
    const r = await s.cli(["stop", "alpha"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /now stopped/);
    assert.deepEqual(processGroup(daemonPid), []);
    const survivors = members.filter((p) => {
      try {
        return !Deno.readTextFileSync(`/proc/${p}/stat`).includes(") Z ");
      } catch {
        return false;
      }
    });
    assert.deepEqual(survivors, []);
    assert.deepEqual(processesMentioning(s.configDir), []);
    const list = await s.cli(["list"]);
    assert.match(list.stdout, new RegExp(`\\| ${endpointId} \\| Stopped +\\| alpha`));
    const log = await Deno.readTextFile(join(epDir, "endpoint.log"));
    assert.match(log, /stopped: received SIGTERM/);
  });

  await t.step(
    "a stale pid file is reported as Disconnected, then cleaned up by start",
    async () => {
      const dead = new Deno.Command("true").spawn();
      await dead.status;
      await Deno.writeTextFile(join(epDir, "daemon.pid"), `${dead.pid}\n`);
      assert.match((await s.cli(["list"])).stdout, /Disconnected/);
      const r = await s.cli(["start", "alpha"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /stale pid file/);
      assert.match(r.stdout, new RegExp(`registered ID: ${endpointId}`));
    },
  );

  await t.step("restart keeps the endpoint id and replaces the daemon", async () => {
    const before = Number(await Deno.readTextFile(join(epDir, "daemon.pid")));
    const r = await s.cli(["restart", "alpha"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`registered ID: ${endpointId}`));
    const after = Number(await Deno.readTextFile(join(epDir, "daemon.pid")));
    assert.notEqual(after, before);
    assert.deepEqual(processGroup(before), []);
    const fn = await s.client.registerFunction(() => "again");
    assert.equal(await waitForResult(s.client, await s.client.run(fn, endpointId)), "again");
  });

  await t.step("delete removes it on the service and here, stopping the daemon", async () => {
    const pid = Number(await Deno.readTextFile(join(epDir, "daemon.pid")));
    const r = await s.cli(["delete", "alpha", "--yes"]);
    assert.equal(r.code, 0, r.stderr);
    await Deno.stat(epDir).then(() => assert.fail("still there"), () => {});
    assert.deepEqual(processGroup(pid), []);
    assert.deepEqual(processesMentioning(s.configDir), []);
    // The service refuses the deleted id.
    assert.equal((await s.cli(["configure", "alpha"])).code, 0);
    const again = await s.cli(["start", "alpha", "--endpoint-uuid", endpointId]);
    assert.equal(again.code, 69, again.stderr);
    assert.match(again.stderr, /registration blocked/i);
  });

  await t.step("logout with nothing stored says so", async () => {
    const r = await s.cli(["logout"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /No stored login/);
  });
});

Deno.test("funcx-endpoint CLI: version, whoami (text and --json) and completion", async () => {
  await using s = await serviceEnv();
  const v = await s.cli(["version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^funcX endpoint version: \d+\.\d+\.\d+/);
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.deepEqual(JSON.parse((await s.cli(["version", "--json"])).stdout), {
    version: config.version,
  });
  const whoJson = await s.cli(["whoami", "--json"]);
  assert.equal(whoJson.code, 0, whoJson.stderr);
  const me = JSON.parse(whoJson.stdout);
  assert.equal(me.user, "dev");
  assert.equal(me.client_id, s.service.clientId);
  assert.equal(me.service, s.service.address);
  assert.match(me.user_id, UUID);
  const who = await s.cli(["whoami"]);
  assert.equal(who.code, 0, who.stderr);
  assert.ok(
    who.stdout.includes(s.service.address) || who.stdout.includes(s.service.clientId),
    who.stdout,
  );
  const bash = await s.cli(["completion", "bash"]);
  assert.equal(bash.code, 0);
  assert.match(bash.stdout, /complete -F _funcx_endpoint funcx-endpoint/);
  assert.match(bash.stdout, /start\) opts="[^"]*--endpoint-uuid/);
  assert.doesNotMatch(bash.stdout, /__daemon/);
  const fish = await s.cli(["completion", "fish"]);
  assert.match(fish.stdout, /complete -c funcx-endpoint/);
  const home = join(s.dir, "home");
  await Deno.mkdir(home);
  const inst = await s.cli(["--install-completion", "bash"], { HOME: home });
  assert.equal(inst.code, 0, inst.stderr);
  await s.cli(["--install-completion", "bash"], { HOME: home });
  const rc = await Deno.readTextFile(join(home, ".bashrc"));
  assert.equal(rc, "source <(funcx-endpoint completion bash)\n");
  const bad = await s.cli(["completion", "tcsh"]);
  assert.notEqual(bad.code, 0);
});
