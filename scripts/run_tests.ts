/**
 * The test command (`deno task test`): makes sure RabbitMQ is installed, starts one private broker
 * for the whole run, runs `deno test` (with the JSDoc examples, `--doc`) against it, tears the broker down (also on failure or
 * Ctrl-C) and ends with one plain line `N passed, N failed`.
 *
 * Extra arguments go to `deno test` (for example a file or `--filter`).
 *
 * @module
 */
import { ensureRabbitInstalled, RabbitBroker } from "../tests/harness/rabbitmq.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DEFAULT_TARGETS = ["mod.ts", "sdk/", "service/", "endpoint/", "tests/"];

await ensureRabbitInstalled();
const started = performance.now();
const broker = await RabbitBroker.start();
console.error(
  `Private RabbitMQ node ${broker.info.nodeName} ready in ${
    ((performance.now() - started) / 1000).toFixed(1)
  } s (amqp ${broker.info.amqpPort}, management ${broker.info.managementPort})`,
);
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
  await broker.stop();
}
if (code !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(code === 0 && failed === 0 ? 0 : 1);
