import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { WalCheckpointer } from "./_wal_checkpointer.ts";
import { SqliteStore } from "./sqlite_store.ts";
import { until } from "../tests/harness/until.ts";

Deno.test("the thread checkpoints a log that commits no longer checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "s.db");
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;");
  db.exec("CREATE TABLE t (v TEXT)");
  const ins = db.prepare("INSERT INTO t (v) VALUES (?)");
  for (let i = 0; i < 2000; i++) ins.run("x".repeat(200));
  const failures: string[] = [];
  const c = WalCheckpointer.start(path, 20, (e) => failures.push(e));
  try {
    const done = await until("a complete checkpoint", () => {
      const r = c.last;
      return r && "log" in r && r.log > 0 && r.checkpointed === r.log && r;
    });
    assert.ok(done.log > 100, `a log of ${done.log} frames`);
    assert.deepEqual(failures, []);
    // The next write starts the log over: it stays small.
    ins.run("y");
    await c.stop();
    const left = db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as { log: number };
    assert.ok(Number(left.log) < 10, `the log restarted (${left.log} frames)`);
  } finally {
    await c.stop();
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a thread that cannot open the file says so once and stops", async () => {
  const dir = await Deno.makeTempDir();
  const failures: string[] = [];
  const c = WalCheckpointer.start(join(dir, "no", "such", "s.db"), 20, (e) => failures.push(e));
  try {
    await until("the failure", () => failures.length > 0);
    assert.equal(failures.length, 1);
    assert.match(failures[0]!, /unable to open|cannot open/i);
  } finally {
    await c.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the store checkpoints in a thread unless told not to or in memory", async () => {
  const dir = await Deno.makeTempDir();
  const a = SqliteStore.open(join(dir, "a.db"), { taskTtlS: 60 });
  const b = SqliteStore.open(join(dir, "b.db"), { taskTtlS: 60, checkpointInThread: false });
  const m = SqliteStore.open(":memory:", { taskTtlS: 60 });
  try {
    assert.equal(a.checkpointsInThread, true);
    assert.equal(b.checkpointsInThread, false);
    assert.equal(m.checkpointsInThread, false);
  } finally {
    await a.close();
    await b.close();
    await m.close();
    await Deno.remove(dir, { recursive: true });
  }
});
