/**
 * Tests of the private RabbitMQ node against the real server: messages go through it, a vhost
 * is usable and removable, and no process of the node outlives `stop()` or its owner.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { type BrokerInfo, RabbitBroker } from "./rabbitmq.ts";
import { firstLine, markedPids } from "./_os.ts";

Deno.test("RabbitBroker.start serves a new vhost and stop() leaves no process, port or dir", async () => {
  const started = performance.now();
  const broker = await RabbitBroker.start();
  console.error(`  node ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const { info } = broker;
  try {
    assert.equal(broker.state, "running");
    assert.match(info.nodeName, /^funcx-[0-9a-f]+@localhost$/);
    assert.ok((await pgrep(info.nodeName)).length > 0, "pgrep finds the running node");

    const url = await broker.createVhost("harness-test");
    assert.equal(url, `${info.amqpUrl}/harness-test`);
    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue("greetings", { durable: false });
    await new Promise<void>((resolve, reject) =>
      ch.sendToQueue("greetings", Buffer.from("hello, broker"), {}, (err) => {
        if (err) reject(err);
        else resolve();
      })
    );
    const body = await new Promise<string>((resolve) => {
      void ch.consume("greetings", (msg) => {
        if (msg === null) return;
        ch.ack(msg);
        resolve(msg.content.toString());
      });
    });
    assert.equal(body, "hello, broker");
    await conn.close();

    await broker.deleteVhost("harness-test");
    await assert.rejects(amqp.connect(url), "the deleted vhost refuses logins");
    await broker.deleteVhost("harness-test"); // already gone: not an error

    // A client still connected at stop() learns at once that the server went away.
    const idle = await amqp.connect(info.amqpUrl);
    const closed = new Promise<string>((resolve) => {
      idle.on("error", () => {});
      idle.on("close", (err?: Error) => resolve(String(err?.message)));
    });
    await broker.stop();
    assert.match(await closed, /ECONNRESET|CONNECTION_FORCED/);
  } finally {
    await broker.stop();
  }
  await broker.stop(); // idempotent
  assert.equal(broker.state, "stopped");
  await assertGone(info);
});

Deno.test("RabbitBroker.restart keeps durable queues and persistent messages; stop() still cleans up", async () => {
  const broker = await RabbitBroker.start();
  const { info } = broker;
  try {
    const url = await broker.createVhost("restart-test");
    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue("kept", { durable: true });
    await ch.assertQueue("dropped", { durable: false });
    const send = (queue: string, text: string) =>
      new Promise<void>((resolve, reject) =>
        ch.sendToQueue(queue, Buffer.from(text), { persistent: true }, (err) => {
          if (err) reject(err);
          else resolve();
        })
      );
    await send("kept", "survives the restart");
    await send("dropped", "goes with its queue");
    const closed = new Promise<void>((resolve) => {
      conn.on("error", () => {});
      conn.on("close", () => resolve());
    });

    await broker.stopNode();
    assert.equal(broker.state, "down");
    await closed;
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: info.amqpPort }),
      Deno.errors.ConnectionRefused,
      "a stopped node takes no connections",
    );
    const running = (await pgrep(info.nodeName)).filter((pid) => !isWatcher(pid));
    assert.deepEqual(running, [], "no process of the node but its watchers runs while down");
    assert.ok(await exists(info.dir), "the node's directory is kept while down");

    await broker.startNode();
    assert.equal(broker.state, "running");
    const again = await amqp.connect(url);
    again.on("error", () => {});
    const ch2 = await again.createChannel();
    ch2.on("error", () => {}); // the failed check below closes the channel
    const msg = await ch2.get("kept", { noAck: true });
    assert.ok(msg, "the persistent message is still in the durable queue");
    assert.equal(msg.content.toString(), "survives the restart");
    await assert.rejects(ch2.checkQueue("dropped"), /NOT_FOUND/, "a transient queue is gone");
    const confirmed = await again.createConfirmChannel();
    await new Promise<void>((resolve, reject) =>
      confirmed.sendToQueue("kept", Buffer.from("confirmed before the crash"), {
        persistent: true,
      }, (err) => err ? reject(err) : resolve())
    );
    await again.close().catch(() => {});

    // restart() does both; a message the broker confirmed survives a crash too (an ack may not,
    // so a message already taken can come back).
    await broker.restart({ kill: true });
    assert.equal(broker.state, "running");
    const third = await amqp.connect(url);
    third.on("error", () => {});
    const ch3 = await third.createChannel();
    const bodies: string[] = [];
    for (let m; (m = await ch3.get("kept", { noAck: true })) !== false;) {
      bodies.push(m.content.toString());
    }
    assert.ok(bodies.includes("confirmed before the crash"), JSON.stringify(bodies));
    await third.close();
  } finally {
    await broker.stop();
  }
  assert.equal(broker.state, "stopped");
  await assertGone(info);
});

Deno.test("RabbitBroker.start rejects with the abort reason and stops the half-started node", async () => {
  const reason = new Error("test gave up");
  const controller = new AbortController();
  let launched: BrokerInfo | undefined;
  const start = RabbitBroker.start({
    signal: controller.signal,
    onLaunch: (info) => {
      launched = info;
      controller.abort(reason);
    },
  });
  await assert.rejects(start, reason);
  assert.ok(launched, "the node was launched before the abort");
  await assertGone(launched);
});

Deno.test("RabbitBroker node dies with the process that started it, even on SIGKILL", async () => {
  const harness = new URL("./rabbitmq.ts", import.meta.url).href;
  const owner = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { RabbitBroker } from "${harness}";
       const b = await RabbitBroker.start();
       console.log(JSON.stringify(b.info));
       setInterval(() => {}, 1000);`,
    ],
    cwd: new URL("../../", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const line = await firstLine(owner.stdout);
  const info = JSON.parse(line) as BrokerInfo;
  assert.ok((await pgrep(info.nodeName)).length > 0, "pgrep finds the running node");
  owner.kill("SIGKILL");
  await owner.status;
  // The watcher's grace period is 5 s before it kills what is left and removes the directory.
  for (
    let i = 0;
    i < 150 && (await markedPids(`RABBITMQ_NODENAME=${info.nodeName}`)).length > 0;
    i++
  ) await sleep(100);
  await assertGone(info);
});

async function assertGone(info: BrokerInfo): Promise<void> {
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: info.amqpPort }),
    Deno.errors.ConnectionRefused,
  );
  assert.deepEqual(await pgrep(info.nodeName), [], "no process has the node name");
  assert.deepEqual(
    await markedPids(`RABBITMQ_NODENAME=${info.nodeName}`),
    [],
    "no process carries the node's env",
  );
  // The watcher removes the directory as its last act.
  for (let i = 0; i < 20 && (await exists(info.dir)); i++) await sleep(100);
  assert.equal(await exists(info.dir), false, `directory "${info.dir}" is removed`);
}

async function pgrep(pattern: string): Promise<string[]> {
  const out = await new Deno.Command("pgrep", { args: ["-f", pattern] }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "");
}

/** The watcher that removes the node's directory at `stop()` names the node too. */
function isWatcher(pid: string): boolean {
  const cmdline = (() => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    } catch {
      return "";
    }
  })();
  return cmdline.includes("-watcher");
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
