/**
 * The dev stack (`deno task dev`): a private broker, the service and an endpoint named `default`
 * in the foreground. It prints, and writes to `.funcx/dev.env`, the variables a script needs to
 * use it, and stops everything on Ctrl-C.
 *
 * @module
 */
import { join } from "node:path";
import { ensureRabbitInstalled, RabbitBroker } from "../tests/harness/rabbitmq.ts";
import { brokerAccess, startStack } from "../tests/harness/stack.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const workers = Number(Deno.env.get("FUNCX_DEV_WORKERS") ?? "2");

await ensureRabbitInstalled();
const broker = await RabbitBroker.start();
const stack = await startStack({ broker: brokerAccess(broker), workers, echo: true }).catch(
  async (err) => {
    await broker.stop();
    throw err;
  },
);
const vars: Record<string, string> = {
  ...stack.service.env,
  FUNCX_ENDPOINT_ID: stack.endpoint.endpointId,
};
const envText = Object.entries(vars).map(([k, v]) => `${k}=${v}`).join("\n") + "\n";
const envFile = join(ROOT, ".funcx", "dev.env");
await Deno.mkdir(join(ROOT, ".funcx"), { recursive: true, mode: 0o700 });
await Deno.writeTextFile(envFile, envText, { mode: 0o600 });
console.log(`\nfuncX dev stack is up. Variables (also in ${envFile}):\n`);
for (const [k, v] of Object.entries(vars)) console.log(`export ${k}=${v}`);
console.log(`\nBroker management UI: ${broker.info.managementUrl}`);
console.log("Press Ctrl-C to stop.\n");

const { promise: stopped, resolve } = Promise.withResolvers<string>();
Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
stack.endpoint.process.status.then((s) => resolve(`endpoint exited (${s.code})`));
stack.service.process.status.then((s) => resolve(`service exited (${s.code})`));
console.log(`Stopping: ${await stopped}`);
await stack.stop();
await broker.stop();
await Deno.remove(envFile).catch(() => {});
Deno.exit(0);
