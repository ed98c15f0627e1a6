import assert from "node:assert/strict";
import { join } from "node:path";
import { ResultJournal } from "./result_journal.ts";
import { parseSegment } from "./journal_record.ts";
import { until } from "../tests/harness/until.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function segments(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(join(dir, "result_journal"))) names.push(e.name);
  return names.sort();
}

async function readAll(j: ResultJournal): Promise<[string, number[]][]> {
  const out: [string, number[]][] = [];
  for await (const r of j.unconfirmed()) out.push([r.taskId, [...r.packed]]);
  return out;
}

Deno.test("ResultJournal reopened without a close (a crash) gives back unconfirmed results", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir);
    assert.equal((await Deno.stat(j.dir)).mode! & 0o777, 0o700);
    await Promise.all([
      j.append("a", bytes(1, 2)),
      j.append("b", bytes(3)),
      j.append("c", bytes()),
    ]);
    j.confirm("b");
    await j.append("d", bytes(4)); // the marker of "b" is written (unsynced) with this batch
    // No close: as after SIGKILL.
    const again = await ResultJournal.open(dir);
    assert.deepEqual(await readAll(again), [["a", [1, 2]], ["c", []], ["d", [4]]]);
    assert.deepEqual(again.recoveredConfirmed, ["b"]);
    assert.ok(again.has("a") && !again.has("b"));
    await again.close();
  });
});

Deno.test("ResultJournal ignores a torn or corrupt tail record and keeps what precedes it", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir);
    await j.append("whole", bytes(7, 7, 7));
    await j.append("torn", new Uint8Array(100).fill(9));
    const [name] = await segments(dir);
    const file = join(dir, "result_journal", name!);
    const full = await Deno.readFile(file);
    // Cut the last record short, as a crash in the middle of a write does.
    await Deno.writeFile(file, full.subarray(0, full.byteLength - 40));
    const torn = await ResultJournal.open(dir);
    assert.deepEqual(await readAll(torn), [["whole", [7, 7, 7]]]);
    assert.equal(torn.pending, 1);
    // A flipped byte fails the checksum the same way.
    const flipped = full.slice();
    flipped[flipped.byteLength - 1]! ^= 0xff;
    await Deno.writeFile(file, flipped);
    const corrupt = await ResultJournal.open(dir);
    assert.deepEqual((await readAll(corrupt)).map(([id]) => id), ["whole"]);
    // New records go to a new segment, never after a torn tail.
    await corrupt.append("after", bytes(1));
    const reread = await ResultJournal.open(dir);
    assert.deepEqual((await readAll(reread)).map(([id]) => id), ["whole", "after"]);
  });
});

Deno.test("ResultJournal commits results that arrive together with one write", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir);
    const writes: number[] = [];
    const orig = Deno.FsFile.prototype.syncData;
    Deno.FsFile.prototype.syncData = function () {
      writes.push(1);
      return orig.call(this);
    };
    try {
      await Promise.all(Array.from({ length: 200 }, (_, i) => j.append(`t${i}`, bytes(i % 256))));
    } finally {
      Deno.FsFile.prototype.syncData = orig;
    }
    assert.equal(writes.length, 1);
    assert.equal(j.pending, 200);
    await j.close();
  });
});

Deno.test("ResultJournal deletes a segment once all its results are confirmed", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir, { maxSegmentBytes: 64 });
    for (let i = 0; i < 6; i++) await j.append(`t${i}`, new Uint8Array(40));
    const before = await segments(dir);
    assert.ok(before.length >= 3, `one segment per record or two, got ${before}`);
    for (let i = 0; i < 5; i++) j.confirm(`t${i}`);
    await j.append("t6", new Uint8Array(1));
    // Reading waits for the writes (and the deletes after them) to settle.
    assert.deepEqual((await readAll(j)).map(([id]) => id), ["t5", "t6"]);
    const after = await segments(dir);
    assert.ok(after.length < before.length, `${after} after ${before}`);
    assert.ok(!after.includes(before[0]!));
    j.confirm("t5");
    j.confirm("t6");
    await j.close();
    assert.deepEqual(await segments(dir), []);
    const again = await ResultJournal.open(dir);
    assert.equal(again.pending, 0);
    await again.close();
  });
});

Deno.test("ResultJournal imports results left in unacked_results/ by older versions", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(join(dir, "unacked_results"));
    await Deno.writeFile(join(dir, "unacked_results", "old-1"), bytes(5, 6));
    const j = await ResultJournal.open(dir);
    assert.deepEqual(await readAll(j), [["old-1", [5, 6]]]);
    await assert.rejects(Deno.stat(join(dir, "unacked_results")), Deno.errors.NotFound);
    await j.close();
    assert.ok((await ResultJournal.open(dir)).has("old-1"));
  });
});

Deno.test("ResultJournal forgets results whose write failed", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir);
    await j.append("ok", bytes(1));
    const orig = Deno.FsFile.prototype.write;
    Deno.FsFile.prototype.write = () => Promise.reject(new Error("No space left on device"));
    try {
      await assert.rejects(j.append("lost", bytes(2)), /Cannot write to result journal/);
    } finally {
      Deno.FsFile.prototype.write = orig;
    }
    assert.ok(!j.has("lost"));
    await j.append("later", bytes(3));
    assert.deepEqual((await readAll(j)).map(([id]) => id), ["ok", "later"]);
    await j.close();
  });
});

/** Counts `syncData` calls while `fn` runs. */
async function countingSyncs(fn: () => Promise<void>): Promise<number> {
  let syncs = 0;
  const orig = Deno.FsFile.prototype.syncData;
  Deno.FsFile.prototype.syncData = function () {
    syncs++;
    return orig.call(this);
  };
  try {
    await fn();
  } finally {
    Deno.FsFile.prototype.syncData = orig;
  }
  return syncs;
}

Deno.test("ResultJournal syncs no result the broker confirms within the delay", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir, { syncDelayMs: 60_000 });
    const syncs = await countingSyncs(async () => {
      const appended = Array.from({ length: 50 }, (_, i) => j.append(`t${i}`, bytes(i)));
      for (let i = 0; i < 50; i++) j.confirm(`t${i}`);
      await Promise.all(appended);
    });
    assert.equal(syncs, 0);
    assert.equal(j.pending, 0);
    await j.close();
    // Written all the same: a crash right after leaves them known as confirmed.
    const again = await ResultJournal.open(dir);
    assert.equal(again.pending, 0);
    await again.close();
  });
});

Deno.test("ResultJournal writes results at once and syncs the unconfirmed after the delay", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir, { syncDelayMs: 60_000 });
    let settled = false;
    const appended = Promise.all([j.append("a", bytes(1)), j.append("b", bytes(2))])
      .then(() => settled = true);
    // On disk (a daemon SIGKILLed now loses nothing) long before the sync is due.
    const onDisk = await until("both records in the segment", async () => {
      const [name] = await segments(dir);
      if (!name) return false;
      const records = [...parseSegment(await Deno.readFile(join(dir, "result_journal", name)))];
      return records.length === 2 && records;
    });
    assert.deepEqual(onDisk.map((r) => r.taskId), ["a", "b"]);
    assert.equal(settled, false, "settled without a sync or a confirm");
    await j.close();
    await appended;

    const k = await ResultJournal.open(dir, { syncDelayMs: 20 });
    const syncs = await countingSyncs(() =>
      Promise.all([k.append("c", bytes(3)), k.append("d", bytes(4))]).then(() => {})
    );
    assert.equal(syncs, 1);
    assert.equal(k.pending, 4);
    await k.close();
  });
});

Deno.test("ResultJournal's close syncs what waits for the delay at once", async () => {
  await withDir(async (dir) => {
    const j = await ResultJournal.open(dir, { syncDelayMs: 60_000 });
    let syncs = 0;
    const started = Date.now();
    syncs = await countingSyncs(async () => {
      const appended = j.append("a", bytes(1));
      await j.close();
      await appended;
    });
    assert.ok(Date.now() - started < 30_000, "the close did not wait for the delay");
    assert.equal(syncs, 1);
    const again = await ResultJournal.open(dir);
    assert.deepEqual((await readAll(again)).map(([id]) => id), ["a"]);
    await again.close();
  });
});
