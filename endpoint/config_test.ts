import assert from "node:assert/strict";
import { ConfigError, configTemplate, envOverrides, loadConfig, validateConfig } from "./config.ts";
import { parse } from "yaml";

Deno.test("validateConfig fills defaults, including the engine section", () => {
  const c = validateConfig("c.yaml", {});
  assert.equal(c.heartbeat_period, 30);
  assert.equal(c.heartbeat_threshold, 120);
  assert.equal(c.idle_heartbeats_soft, 0);
  assert.equal(c.idle_heartbeats_hard, 5760);
  assert.equal(c.detach_endpoint, true);
  assert.equal(c.max_consecutive_failures, null);
  assert.equal(c.reconnect_delay_min, 1);
  assert.equal(c.reconnect_delay_max, 60);
  assert.equal(c.allowed_functions, null);
  assert.equal(c.engine.max_workers_per_node, navigator.hardwareConcurrency);
});

Deno.test("validateConfig rejects an unknown field, naming it and the file", () => {
  assert.throws(
    () => validateConfig("/x/c.yaml", { heartbeat_perod: 3 }),
    (err: unknown) =>
      err instanceof ConfigError && err.path === "heartbeat_perod" &&
      /"\/x\/c\.yaml".*"heartbeat_perod"/.test(err.message),
  );
});

Deno.test("validateConfig names the path of a nested wrong type", () => {
  try {
    validateConfig("c.yaml", { engine: { max_workers_per_node: "two" } });
    assert.fail("accepted");
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, "engine.max_workers_per_node");
    assert.match(err.message, /field "engine\.max_workers_per_node"/);
  }
  assert.throws(
    () => validateConfig("c.yaml", { allowed_functions: ["nope"] }),
    /allowed_functions\.0/,
  );
  assert.throws(() => validateConfig("c.yaml", ["a"]), /expected a mapping/);
});

Deno.test("validateConfig applies env, then flags, over the file", () => {
  const file = {
    funcx_service_address: "http://file:1",
    heartbeat_period: 10,
    engine: { managers: 1 },
  };
  const env = envOverrides({ FUNCX_SERVICE_ADDRESS: "http://env:2", FUNCX_SDK_ENVIRONMENT: "dev" });
  const c = validateConfig("c.yaml", file, env, {
    heartbeat_period: 2,
    engine: { max_workers_per_node: 3 },
  });
  assert.equal(c.funcx_service_address, "http://env:2");
  assert.equal(c.environment, "dev");
  assert.equal(c.heartbeat_period, 2);
  assert.equal(c.engine.max_workers_per_node, 3);
  assert.equal(c.engine.managers, 1);
  const flags = validateConfig("c.yaml", file, env, { funcx_service_address: "http://flag:3" });
  assert.equal(flags.funcx_service_address, "http://flag:3");
});

Deno.test("the configure template is valid and round-trips through loadConfig", async () => {
  const raw = parse(configTemplate("demo"));
  assert.equal(raw.display_name, "demo");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/config.yaml`, configTemplate("demo"));
    const c = await loadConfig(`${dir}/config.yaml`);
    assert.equal(c.display_name, "demo");
    await Deno.writeTextFile(`${dir}/bad.yaml`, "a: [1,\n");
    await assert.rejects(loadConfig(`${dir}/bad.yaml`), /Invalid YAML in ".*bad\.yaml"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validateConfig keeps max_consecutive_failures as an explicit limit, 0 or null forever", () => {
  assert.equal(
    validateConfig("c.yaml", { max_consecutive_failures: 5 }).max_consecutive_failures,
    5,
  );
  assert.equal(
    validateConfig("c.yaml", { max_consecutive_failures: 0 }).max_consecutive_failures,
    0,
  );
  assert.throws(
    () => validateConfig("c.yaml", { max_consecutive_failures: -1 }),
    (err: unknown) => err instanceof ConfigError && err.path === "max_consecutive_failures",
  );
  assert.throws(
    () => validateConfig("c.yaml", { reconnect_delay_min: 5, reconnect_delay_max: 2 }),
    (err: unknown) => err instanceof ConfigError && err.path === "reconnect_delay_max",
  );
});

Deno.test("broker_deadline comes from the file, FUNCX_ENDPOINT_BROKER_DEADLINE overrides it", () => {
  assert.equal(validateConfig("c.yaml", {}).broker_deadline, 30);
  assert.equal(validateConfig("c.yaml", { broker_deadline: 5 }).broker_deadline, 5);
  const env = envOverrides({ FUNCX_ENDPOINT_BROKER_DEADLINE: "2" });
  assert.equal(validateConfig("c.yaml", { broker_deadline: 5 }, env).broker_deadline, 2);
  for (
    const bad of [{ broker_deadline: 0 }, envOverrides({ FUNCX_ENDPOINT_BROKER_DEADLINE: "soon" })]
  ) {
    assert.throws(
      () => validateConfig("c.yaml", bad),
      (err: unknown) => err instanceof ConfigError && err.path === "broker_deadline",
    );
  }
});
