/**
 * `funcx-endpoint configure --endpoint-config TEMPLATE` and `start --die-with-parent`, run as a
 * user runs them against a real service and broker.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { denoRunArgs } from "./harness/process.ts";
import {
  fastConfig,
  processesMentioning,
  processGroup,
  serviceEnv,
  until,
} from "./_endpoint_helpers.ts";

Deno.test("configure --endpoint-config fills a site template and refuses a broken one", async () => {
  await using s = await serviceEnv();
  const template = join(s.dir, "site.yaml");
  await Deno.writeTextFile(
    template,
    "display_name: $name-on-${name}\nheartbeat_period: 7\nengine:\n  max_workers_per_node: 3\n",
  );
  const r = await s.cli(["configure", "gamma", "--endpoint-config", template]);
  assert.equal(r.code, 0, r.stderr);
  const text = await Deno.readTextFile(join(s.configDir, "gamma", "config.yaml"));
  assert.equal(
    text,
    "display_name: gamma-on-gamma\nheartbeat_period: 7\nengine:\n  max_workers_per_node: 3\n",
  );

  await Deno.writeTextFile(template, "display_name: $name\nheartbeat_perod: 7\n");
  const typo = await s.cli(["configure", "delta", "--endpoint-config", template]);
  assert.equal(typo.code, 65, typo.stderr);
  assert.match(typo.stderr, /heartbeat_perod/);
  assert.ok(typo.stderr.includes(template), typo.stderr);
  await Deno.stat(join(s.configDir, "delta", "config.yaml")).then(
    () => assert.fail("a config was written from a broken template"),
    (e) => assert.ok(e instanceof Deno.errors.NotFound),
  );

  const missing = await s.cli(["configure", "delta", "--endpoint-config", join(s.dir, "nope")]);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /Cannot read the config template/);
});

Deno.test("start --die-with-parent: the daemon stops when the process that started it exits", async () => {
  await using s = await serviceEnv();
  assert.equal((await s.cli(["configure", "omega"])).code, 0);
  await Deno.writeTextFile(join(s.configDir, "omega", "config.yaml"), fastConfig());
  const epDir = join(s.configDir, "omega");

  // A job script: starts the endpoint, then goes on with its own work (here: waiting).
  const start = [
    Deno.execPath(),
    ...denoRunArgs("cli/funcx_endpoint.ts", [
      "start",
      "omega",
      "--die-with-parent",
    ]),
  ].map((a) => `'${a}'`).join(" ");
  const job = new Deno.Command("sh", {
    args: ["-c", `${start} && exec sleep 600`],
    env: s.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const daemonPid = await until("the daemon's pid file", async () => {
      const text = await Deno.readTextFile(join(epDir, "daemon.pid")).catch(() => "");
      return Number(text) || undefined;
    });
    await until("the job script waits in sleep", () => {
      try {
        return Deno.readTextFileSync(`/proc/${job.pid}/cmdline`).startsWith("sleep") || undefined;
      } catch {
        return undefined;
      }
    });
    assert.ok(processGroup(daemonPid).length > 0, "the daemon runs");
    const endpointId = JSON.parse(await Deno.readTextFile(join(epDir, "endpoint.json")))
      .endpoint_id as string;
    const fn = await s.client.registerFunction(() => "alive");
    const task = await s.client.run(fn, endpointId);
    await until("a result", async () => {
      try {
        return await s.client.getResult(task);
      } catch {
        return undefined;
      }
    });

    job.kill("SIGKILL");
    await job.status;
    await until(
      "the daemon and its children to exit",
      () => processGroup(daemonPid).length === 0 ? true : undefined,
    );
    assert.deepEqual(processesMentioning(s.configDir), []);
    const log = await Deno.readTextFile(join(epDir, "endpoint.log"));
    assert.match(log, new RegExp(`parent process ${job.pid} exited`));
    assert.match((await s.cli(["list"])).stdout, /Stopped +\| omega/);
  } finally {
    try {
      job.kill("SIGKILL");
    } catch {
      // already gone
    }
    await job.output().catch(() => {});
  }
});

Deno.test("start against a service that cannot be reached exits 75 and says so", async () => {
  await using s = await serviceEnv();
  assert.equal((await s.cli(["configure", "lost"])).code, 0);
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `http://127.0.0.1:${(closed.addr as Deno.NetAddr).port}`;
  closed.close();
  const r = await s.cli(["start", "lost"], { FUNCX_SERVICE_ADDRESS: address });
  assert.equal(r.code, 75, r.stderr);
  assert.ok(r.stderr.includes(address), r.stderr);
  assert.deepEqual(processesMentioning(join(s.configDir, "lost")), []);
});
