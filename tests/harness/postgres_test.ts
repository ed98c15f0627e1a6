/**
 * Tests of the private PostgreSQL node against the real server: databases are created, used and
 * dropped, and no process of the node outlives `stop()` or its owner, even one killed by SIGKILL.
 *
 * @module
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { nodePids, type PostgresInfo, PostgresNode } from "./postgres.ts";
import { firstLine } from "./_os.ts";

Deno.test("PostgresNode.start serves databases; stop() leaves no process, port or dir", async () => {
  const node = await PostgresNode.start();
  const { info } = node;
  try {
    assert.equal(node.state, "running");
    assert.match(info.url, new RegExp(`^postgres://funcx@127\\.0\\.0\\.1:${info.port}/postgres$`));
    assert.ok((await nodePids(info.name)).length > 0, "no process carries the node's marker");
    const url = await node.createDatabase("harness_test");
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    const [row] = await sql`SELECT current_database() AS db, current_setting('fsync') AS fsync,
      current_setting('listen_addresses') AS listen`;
    assert.deepEqual({ ...row }, { db: "harness_test", fsync: "off", listen: "127.0.0.1" });
    // A second database of the same name is refused; dropping disconnects its clients.
    await assert.rejects(node.createDatabase("harness_test"), /already exists/);
    await node.dropDatabase("harness_test");
    await assert.rejects(sql`SELECT 1`);
    await sql.end({ timeout: 0 });
    await node.dropDatabase("harness_test"); // already gone: not an error
    await node.stop();
  } finally {
    await node.stop();
  }
  await node.stop(); // idempotent
  assert.equal(node.state, "stopped");
  await assertGone(info);
});

Deno.test("PostgresNode dies with the process that started it, even on SIGKILL", async () => {
  const harness = new URL("./postgres.ts", import.meta.url).href;
  const owner = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { PostgresNode } from "${harness}";
       const node = await PostgresNode.start();
       console.log(JSON.stringify(node.info));
       setInterval(() => {}, 1000);`,
    ],
    cwd: new URL("../../", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const info = JSON.parse(await firstLine(owner.stdout)) as PostgresInfo;
  assert.ok((await nodePids(info.name)).length > 0, "the node is running");
  owner.kill("SIGKILL");
  await owner.status;
  // The watcher gives the server 5 s to shut down before it kills what is left.
  for (let i = 0; i < 150 && (await nodePids(info.name)).length > 0; i++) await sleep(100);
  await assertGone(info);
});

async function assertGone(info: PostgresInfo): Promise<void> {
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: info.port }),
    Deno.errors.ConnectionRefused,
  );
  assert.deepEqual(await nodePids(info.name), [], "a process of the node is left");
  // The watcher removes the directory as its last act.
  for (let i = 0; i < 50 && (await exists(info.dir)); i++) await sleep(100);
  assert.equal(await exists(info.dir), false, `directory "${info.dir}" is removed`);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
