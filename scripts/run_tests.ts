/**
 * The test command (`deno task test`): makes sure every Debian package the suite needs is
 * installed (`tests/harness/test_packages.ts`: as root it installs them, otherwise it stops and
 * names them), starts one private broker and one private PostgreSQL node for the whole run (at
 * the same time), runs `deno test` (with the JSDoc examples, `--doc`) against them, tears both
 * down (also on failure or Ctrl-C) and ends with one plain line `N passed, N failed`. Tests reach the broker through
 * `FUNCX_TEST_AMQP_URL` and `FUNCX_TEST_MANAGEMENT_URL`, and PostgreSQL through
 * `FUNCX_TEST_POSTGRES_URL` (the maintenance database; each test creates a database of its own).
 *
 * Extra arguments go to `deno test` (for example a file or `--filter`).
 *
 * @module
 */
import { RabbitBroker } from "../tests/harness/rabbitmq.ts";
import { PostgresNode } from "../tests/harness/postgres.ts";
import { ensureTestPackages } from "../tests/harness/test_packages.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DEFAULT_TARGETS = ["mod.ts", "sdk/", "service/", "endpoint/", "tests/"];

await ensureTestPackages();
const started = performance.now();
const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
const [brokerStart, postgresStart] = await Promise.allSettled([
  RabbitBroker.start().then((b) => {
    console.error(
      `Private RabbitMQ node ${b.info.nodeName} ready in ${seconds()} s ` +
        `(amqp ${b.info.amqpPort}, management ${b.info.managementPort})`,
    );
    return b;
  }),
  PostgresNode.start().then((p) => {
    console.error(
      `Private PostgreSQL node ${p.info.name} ready in ${seconds()} s (port ${p.info.port})`,
    );
    return p;
  }),
]);
if (brokerStart.status === "rejected" || postgresStart.status === "rejected") {
  if (brokerStart.status === "fulfilled") await brokerStart.value.stop();
  if (postgresStart.status === "fulfilled") await postgresStart.value.stop();
  throw brokerStart.status === "rejected"
    ? brokerStart.reason
    : (postgresStart as PromiseRejectedResult).reason;
}
const broker = brokerStart.value;
const pg = postgresStart.value;
let child: Deno.ChildProcess | undefined;
const onSignal = () => {
  child?.kill("SIGTERM");
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

let passed = 0;
let failed = 0;
let code = 1;
try {
  const userArgs = Deno.args;
  const targets = userArgs.some((a) => !a.startsWith("-")) ? [] : DEFAULT_TARGETS;
  child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--parallel", "--doc", ...userArgs, ...targets],
    cwd: ROOT,
    env: {
      FUNCX_TEST_AMQP_URL: broker.info.amqpUrl,
      FUNCX_TEST_MANAGEMENT_URL: broker.info.managementUrl,
      FUNCX_TEST_POSTGRES_URL: pg.info.url,
      DENO_JOBS: Deno.env.get("DENO_JOBS") ?? "2",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  // Echo the output and keep the tail to read Deno's own summary line.
  let tail = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    await Deno.stdout.write(chunk);
    tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
  }
  const status = await child.status;
  code = status.code;
  const m = /(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(tail);
  if (m) {
    passed = Number(m[1]);
    failed = Number(m[2]);
  } else if (code !== 0) {
    failed = 1;
  }
} finally {
  await Promise.all([broker.stop(), pg.stop()]);
}
if (code !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(code === 0 && failed === 0 ? 0 : 1);
