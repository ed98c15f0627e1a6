/**
 * The endpoint daemon's broker link against a real broker and service: one consumer per
 * endpoint id, reconnecting after the broker drops its connection with tasks in flight, a crash
 * (SIGKILL) mid-batch and a restart, duplicate results, and `stop --remote`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { packArgs, serialize } from "../sdk/protocol/mod.ts";
import { packMessage } from "../sdk/protocol/mod.ts";
import { waitForResult } from "./harness/wait.ts";
import { ResultJournal } from "../endpoint/result_journal.ts";
import { deleteVhost, startEndpoint } from "./harness/stack.ts";
import {
  dropEndpointConnections,
  fastConfig,
  processesMentioning,
  processGroup,
  serviceEnv,
  until,
  writeConfig,
} from "./_endpoint_helpers.ts";

async function submitMany(
  s: { client: import("../mod.ts").FuncXClient },
  fnId: string,
  ep: string,
  n: number,
): Promise<string[]> {
  const res = await s.client.submit(
    Array.from({ length: n }, (_, i) => [fnId, ep, packArgs([i])] as [string, string, string]),
  );
  return res.results.map((r) => {
    assert.equal(r.status, "Success");
    return r.task_uuid!;
  });
}

Deno.test("endpoint broker link: exclusive consumer, reconnect, crash and restart", async (t) => {
  await using s = await serviceEnv();
  assert.equal((await s.cli(["configure", "main"])).code, 0);
  await writeConfig(s.configDir, "main", fastConfig());
  const start = await s.cli(["start", "main"]);
  assert.equal(start.code, 0, start.stderr);
  const epId = /registered ID: (\S+)/.exec(start.stdout)![1]!;
  const epDir = join(s.configDir, "main");

  await t.step(
    "a second endpoint with the same id is refused with a clear message (69)",
    async () => {
      assert.equal((await s.cli(["configure", "twin"])).code, 0);
      await writeConfig(s.configDir, "twin", fastConfig());
      const r = await s.cli(["start", "twin", "--endpoint-uuid", epId, "--foreground"]);
      assert.equal(r.code, 69, r.stderr);
      assert.match(r.stderr, /already running elsewhere/);
      // The first one still works.
      const fn = await s.client.registerFunction(() => "still mine");
      assert.equal(await waitForResult(s.client, await s.client.run(fn, epId)), "still mine");
    },
  );

  await t.step(
    "the broker dropping the connection with tasks in flight loses no result",
    async () => {
      // The tasks wait for a gate file, so the drops surely happen with work in flight, however
      // fast the machine is.
      const gate = join(s.dir, "gate-drop");
      const fn = await s.client.registerFunctionSource(
        "gated",
        `async function gated(i) {
          for (;;) {
            try { await Deno.stat(${JSON.stringify(gate)}); break; }
            catch { await new Promise((r) => setTimeout(r, 50)); }
          }
          return i * 2;
        }`,
      );
      const ids = await submitMany(s, fn, epId, 60);
      // The management API lists a new connection within its stats interval (~5 s): poll.
      const drop = () =>
        until(
          "the endpoint's connection",
          async () => (await dropEndpointConnections(s.access, s.vhost)) > 0,
        );
      const connects = async () =>
        (await Deno.readTextFile(join(epDir, "endpoint.log"))).split("Connected to the broker")
          .length - 1;
      const before = await connects();
      await drop();
      await until("a reconnect", async () => (await connects()) > before);
      await drop();
      let pending = 0;
      for (const id of ids) if ((await s.client.getTask(id)).pending) pending++;
      // The drops happened with work left to do.
      assert.ok(pending > 0, "every task had finished before the connection was dropped");
      await Deno.writeTextFile(gate, "");
      for (const [i, id] of ids.entries()) {
        assert.equal(await waitForResult(s.client, id, 90_000), i * 2);
      }
      const log = await Deno.readTextFile(join(epDir, "endpoint.log"));
      assert.match(log, /Lost the broker connection/);
    },
  );

  await t.step(
    "a daemon killed with SIGKILL mid-batch is restarted and every task ends once",
    async () => {
      // Tasks from 10 on wait for a gate file, opened only after the restart, so the kill surely
      // lands mid-batch however fast the machine is.
      const gate = join(s.dir, "gate-kill");
      const fn = await s.client.registerFunctionSource(
        "gatedAfterTen",
        `async function gatedAfterTen(i) {
          while (i >= 10) {
            try { await Deno.stat(${JSON.stringify(gate)}); break; }
            catch { await new Promise((r) => setTimeout(r, 50)); }
          }
          await new Promise((r) => setTimeout(r, 30));
          return { i, pid: Deno.pid };
        }`,
      );
      const ids = await submitMany(s, fn, epId, 150);
      await until("some results", async () => !(await s.client.getTask(ids[5]!)).pending);
      const pid = Number(await Deno.readTextFile(join(epDir, "daemon.pid")));
      Deno.kill(pid, "SIGKILL");
      const unfinished = (await Promise.all(ids.map((id) => s.client.getTask(id))))
        .filter((t) => t.pending).length;
      assert.ok(unfinished > 0, "every task had finished before the kill");
      await until("the daemon's group to end", () => processGroup(pid).length === 0, 60);
      assert.ok((await s.cli(["list"])).stdout.includes("Disconnected"));
      const r = await s.cli(["start", "main"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /stale pid file/);
      await Deno.writeTextFile(gate, "");
      const first = new Map<string, unknown>();
      for (const [i, id] of ids.entries()) {
        const v = await waitForResult(s.client, id, 90_000) as { i: number };
        assert.equal(v.i, i);
        first.set(id, v);
      }
      // What the user saw does not change later (a rerun's duplicate result is dropped).
      for (const id of ids.slice(0, 20)) {
        assert.deepEqual(
          await s.client.getResult(id),
          first.get(id),
        );
      }
    },
  );

  await t.step(
    "results left in the journal by a crash are sent first after a restart",
    async () => {
      assert.equal((await s.cli(["stop", "main"])).code, 0);
      const fn = await s.client.registerFunction(() => "ran again");
      const id = await s.client.run(fn, epId);
      // As if the daemon finished the task but was killed before the broker confirmed its result:
      // journaled, never confirmed, never closed.
      const packed = packMessage({
        message_type: "result",
        data: { task_id: id, data: serialize("from disk"), error_details: null, task_statuses: [] },
      });
      const journal = await ResultJournal.open(epDir);
      await journal.append(id, packed);
      const segments = async () =>
        (await Array.fromAsync(Deno.readDir(journal.dir))).map((e) => e.name);
      const written = await segments();
      const r = await s.cli(["start", "main"]);
      assert.equal(r.code, 0, r.stderr);
      // The journaled result wins over running the task (which would answer "ran again").
      assert.equal(await waitForResult(s.client, id), "from disk");
      await until(
        "the journal segment to be deleted once its result is confirmed",
        async () => !(await segments()).some((n) => written.includes(n)),
      );
      await until(
        "the task's delivery to be acked without running it",
        async () =>
          /Task \S+ was delivered again but already ran here/.test(
            await Deno.readTextFile(join(epDir, "endpoint.log")),
          ),
      );
    },
  );

  await t.step("a duplicate result for a finished task is harmless", async () => {
    const fn = await s.client.registerFunction(() => "original");
    const id = await s.client.run(fn, epId);
    assert.equal(await waitForResult(s.client, id), "original");
    const conn = await amqp.connect(s.service.amqpUrl);
    try {
      const ch = await conn.createConfirmChannel();
      const body = packMessage({
        message_type: "result",
        data: { task_id: id, data: "forged", error_details: null, task_statuses: [] },
      });
      await new Promise<void>((res, rej) =>
        ch.publish(
          "results",
          `${epId}.results`,
          Buffer.from(body),
          { persistent: true },
          (e) => e ? rej(e) : res(),
        )
      );
    } finally {
      await conn.close();
    }
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await s.client.getResult(id), "original");
  });

  await t.step(
    "stop --remote stops the endpoint on another host and locks its id (69)",
    async () => {
      // The same endpoint id running from another config dir: as on a second login node.
      assert.equal((await s.cli(["stop", "main"])).code, 0);
      const other = await startEndpoint({
        service: s.service,
        dir: join(s.dir, "node2"),
        name: "twin",
        args: ["--endpoint-uuid", epId],
      });
      assert.equal(other.endpointId, epId);
      const r = await s.cli(["stop", "main", "--remote"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /locked/);
      const status = await other.process.status;
      assert.equal(status.code, 0);
      assert.match(await other.process.log(), /shut down by the service/);
      const again = await s.cli(["start", "main"]);
      assert.equal(again.code, 69, again.stderr);
      assert.match(again.stderr, /registration blocked/i);
      assert.deepEqual(processesMentioning(s.configDir), []);
      assert.deepEqual(processesMentioning(join(s.dir, "node2")), []);
    },
  );
});

Deno.test("endpoint gives up with exit 75 after an explicit max_consecutive_failures", async () => {
  await using s = await serviceEnv();
  const dir = join(s.dir, "node");
  await Deno.mkdir(join(dir, "config", "lonely"), { recursive: true });
  await writeConfig(
    join(dir, "config"),
    "lonely",
    fastConfig().replace("max_consecutive_failures: 20", "max_consecutive_failures: 2"),
  );
  const ep = await startEndpoint({ service: s.service, dir, name: "lonely" });
  // The broker forgets the whole vhost: every reconnect attempt fails.
  await deleteVhost(s.access, s.vhost);
  const status = await ep.process.status;
  assert.equal(status.code, 75);
  assert.match(
    await ep.process.log(),
    /Cannot reach the broker at \S+ after 2 consecutive attempts/,
  );
});
