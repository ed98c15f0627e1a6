/**
 * The daemon's durable record of finished tasks: every result is appended here the moment it
 * reaches the daemon, at the same time as it is published, so a task whose result is on disk is
 * never run again, not even after a SIGKILL of the daemon. The task message is acked once the
 * result is safe: confirmed by the broker, or synced here, whichever comes first.
 *
 * Layout: `<endpoint dir>/result_journal/<n>.log` (directory 0700, files 0600), append-only
 * segments of records `[u32 length][u32 crc32][kind][payload]`: a *result* (task id and the
 * packed `result` message) or a *confirmed* marker (task id). Results that arrive together are
 * written together, at once: from then on they survive the daemon's death. Surviving the
 * machine's takes an `fdatasync`, which is needed only while the broker has not confirmed a
 * result: one runs `syncDelayMs` after a write that left results unconfirmed, for all of them,
 * so that when confirms come as usual (in about a millisecond) no sync runs at all. Markers
 * are written without a sync (a lost marker only means a duplicate publish, which the service
 * drops). A segment is deleted once every result in it is confirmed; a new one is started when
 * the current one passes `maxSegmentBytes`, and at every open (an old tail may be torn).
 *
 * On open every segment is read back: a torn or corrupt tail record ends that segment; results
 * without a marker are *pending* (sent again first, before any task is consumed), and the ids of
 * confirmed ones are handed to the daemon so a redelivered task message is acked, not rerun.
 * Results left in `unacked_results/` by older versions are imported as pending.
 *
 * @module
 */
import { join } from "node:path";
import {
  confirmedRecord,
  parseSegment,
  resultRecord,
  SEGMENT_NAME,
  segmentName,
} from "./journal_record.ts";

const LEGACY_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Options of {@linkcode ResultJournal.open}. */
export interface ResultJournalOptions {
  /** Size in bytes after which new records go to a new segment. @default 4 MiB */
  maxSegmentBytes?: number;
  /**
   * Milliseconds after a write before the results in it that the broker has not confirmed yet
   * are synced; `0` syncs every write at once. @default 50
   */
  syncDelayMs?: number;
}

/** Default of {@linkcode ResultJournalOptions.syncDelayMs}. */
export const SYNC_DELAY_MS = 50;

/** One journaled result that is not confirmed yet. */
export interface JournaledResult {
  /** The task it belongs to. */
  taskId: string;
  /** The packed `result` message, ready to publish. */
  packed: Uint8Array;
}

interface Segment {
  /** Results in it without a confirm. */
  pending: number;
  /** Records queued for it and not written yet. */
  queued: number;
}

/** An `append` that has not settled: it settles once written and then confirmed or synced. */
interface Waiter {
  taskId: string;
  resolve: () => void;
  reject: (err: unknown) => void;
  /** The broker confirmed the result: once written it needs no sync. */
  confirmed: boolean;
}

interface Queued {
  seg: number;
  bytes: Uint8Array;
  /** Task id of a result record (for undoing it when the write fails). */
  taskId?: string;
}

/** Makes a new segment's directory entry durable, where the file system allows it. */
async function syncDir(dir: string): Promise<void> {
  // Makes a new segment's directory entry durable; not every file system allows it.
  const f = await Deno.open(dir, { read: true }).catch(() => undefined);
  if (!f) return;
  try {
    await f.sync();
  } catch {
    // best effort
  } finally {
    f.close();
  }
}

/** An append-only, segmented, group-committed log of results; see the module doc. */
export class ResultJournal {
  /** The directory holding the segments. */
  readonly dir: string;
  /** Task ids whose result was journaled and confirmed before this open (redeliveries to ack). */
  readonly recoveredConfirmed: readonly string[];
  readonly #maxSegmentBytes: number;
  readonly #segments = new Map<number, Segment>();
  /** Task id → segment of its unconfirmed result. */
  readonly #pending = new Map<string, number>();
  #active: number;
  #activeBytes = 0;
  #queue: Queued[] = [];
  /** Appends in `#queue`, not written yet. */
  #waiters: Waiter[] = [];
  /** Appends written but neither synced nor confirmed. */
  readonly #unsynced = new Set<Waiter>();
  /** Appends not settled yet, written or not, by task id. */
  readonly #unsettled = new Map<string, Waiter[]>();
  readonly #syncDelayMs: number;
  #syncWanted = false;
  #syncTimer: ReturnType<typeof setTimeout> | undefined;
  #timer: ReturnType<typeof setImmediate> | undefined;
  #writing: Promise<void> | undefined;
  /** The sync in progress (and those chained after it); writes go on meanwhile. */
  #syncing: Promise<void> | undefined;
  #file: Deno.FsFile | undefined;
  #fileNo = -1;
  #closed = false;

  private constructor(
    dir: string,
    active: number,
    confirmed: string[],
    maxSegmentBytes: number,
    syncDelayMs: number,
  ) {
    this.dir = dir;
    this.#active = active;
    this.recoveredConfirmed = confirmed;
    this.#maxSegmentBytes = maxSegmentBytes;
    this.#syncDelayMs = syncDelayMs;
  }

  /**
   * Opens (creating it if needed) `<endpointDir>/result_journal`, reads back every segment and
   * imports a legacy `unacked_results/` directory.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ResultJournal } from "./result_journal.ts";
   * const dir = await Deno.makeTempDir();
   * const j = await ResultJournal.open(dir);
   * await j.append("t1", new Uint8Array([1, 2]));
   * assert.ok(j.has("t1"));
   * j.confirm("t1");
   * await j.close();
   * assert.equal((await ResultJournal.open(dir)).pending, 0);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(
    endpointDir: string,
    options: ResultJournalOptions = {},
  ): Promise<ResultJournal> {
    const dir = join(endpointDir, "result_journal");
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await Deno.chmod(dir, 0o700);
    } catch (err) {
      throw new Error(`Cannot use result journal "${dir}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    const numbers: number[] = [];
    for await (const e of Deno.readDir(dir)) {
      const m = e.isFile ? SEGMENT_NAME.exec(e.name) : null;
      if (m) numbers.push(Number(m[1]));
    }
    numbers.sort((a, b) => a - b);
    const pending = new Map<string, number>();
    const confirmed = new Set<string>();
    for (const n of numbers) {
      const bytes = await Deno.readFile(join(dir, segmentName(n)));
      for (const r of parseSegment(bytes)) {
        if (r.kind === "result") {
          if (!confirmed.has(r.taskId) && !pending.has(r.taskId)) pending.set(r.taskId, n);
        } else if (pending.delete(r.taskId)) {
          confirmed.add(r.taskId);
        }
      }
    }
    const active = (numbers.at(-1) ?? 0) + 1;
    const j = new ResultJournal(
      dir,
      active,
      [...confirmed],
      options.maxSegmentBytes ?? 4 << 20,
      options.syncDelayMs ?? SYNC_DELAY_MS,
    );
    for (const n of numbers) j.#segments.set(n, { pending: 0, queued: 0 });
    for (const [id, n] of pending) {
      j.#pending.set(id, n);
      j.#segments.get(n)!.pending++;
    }
    await j.#deleteSettled();
    await j.#importLegacy(join(endpointDir, "unacked_results"));
    return j;
  }

  /** Results of older versions (one file per task): journaled as pending, then removed. */
  async #importLegacy(legacy: string): Promise<void> {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(legacy)) {
        if (e.isFile && LEGACY_KEY.test(e.name)) names.push(e.name);
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    const adds: Promise<void>[] = [];
    for (const name of names) {
      if (this.#pending.has(name)) continue;
      adds.push(this.append(name, await Deno.readFile(join(legacy, name))));
    }
    await Promise.all(adds);
    await Deno.remove(legacy, { recursive: true });
  }

  /** Unconfirmed results. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Whether `taskId` has a journaled result that is not confirmed yet. */
  has(taskId: string): boolean {
    return this.#pending.has(taskId);
  }

  /**
   * Journals a result; resolves once it would survive the machine's death: written (together
   * with whatever else arrived in the same turn or during the previous write), and then either
   * confirmed by the broker ({@linkcode confirm}) or synced. On a failed write or sync it
   * rejects; after a failed write the result is forgotten, as if never appended.
   */
  append(taskId: string, packed: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("The result journal is closed"));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const seg = this.#enqueue(resultRecord(taskId, packed), taskId);
    const old = this.#pending.get(taskId);
    if (old !== undefined) this.#segments.get(old)!.pending--;
    this.#pending.set(taskId, seg);
    this.#segments.get(seg)!.pending++;
    const waiter: Waiter = { taskId, resolve, reject, confirmed: false };
    const same = this.#unsettled.get(taskId);
    if (same) same.push(waiter);
    else this.#unsettled.set(taskId, [waiter]);
    this.#waiters.push(waiter);
    this.#schedule();
    return promise;
  }

  /**
   * Marks a result confirmed by the broker (a marker without a sync; its `append` needs no sync
   * either); no-op for an unknown id.
   */
  confirm(taskId: string): void {
    for (const waiter of this.#unsettled.get(taskId)?.slice() ?? []) {
      waiter.confirmed = true;
      if (this.#unsynced.delete(waiter)) this.#settle(waiter);
    }
    const seg = this.#pending.get(taskId);
    if (seg === undefined || this.#closed) return;
    this.#pending.delete(taskId);
    this.#segments.get(seg)!.pending--;
    this.#enqueue(confirmedRecord(taskId));
    this.#schedule();
  }

  /**
   * The pending results, read back from disk in the order they were journaled (after the writes
   * in progress settle). A result appended during the iteration may or may not be included.
   */
  async *unconfirmed(): AsyncGenerator<JournaledResult> {
    await this.#idle();
    const numbers = [...this.#segments.entries()].filter(([, s]) => s.pending > 0)
      .map(([n]) => n).sort((a, b) => a - b);
    const seen = new Set<string>();
    for (const n of numbers) {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(join(this.dir, segmentName(n)));
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) continue;
        throw err;
      }
      for (const r of parseSegment(bytes)) {
        if (r.kind !== "result" || seen.has(r.taskId) || this.#pending.get(r.taskId) !== n) {
          continue;
        }
        seen.add(r.taskId);
        yield { taskId: r.taskId, packed: r.packed };
      }
    }
  }

  /** Writes and syncs what is queued, deletes fully confirmed segments and closes; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#idle();
    this.#closed = true;
    this.#syncWanted = true;
    // The active segment too, once nothing in it waits: the next open starts a new one anyway.
    this.#active = Number.MAX_SAFE_INTEGER;
    this.#schedule();
    await this.#idle();
    this.#file?.close();
    this.#file = undefined;
    await this.#deleteSettled();
  }

  #enqueue(bytes: Uint8Array, taskId?: string): number {
    if (this.#activeBytes > 0 && this.#activeBytes + bytes.byteLength > this.#maxSegmentBytes) {
      this.#active++;
      this.#activeBytes = 0;
    }
    const seg = this.#active;
    let s = this.#segments.get(seg);
    if (!s) this.#segments.set(seg, s = { pending: 0, queued: 0 });
    s.queued++;
    this.#activeBytes += bytes.byteLength;
    this.#queue.push(taskId === undefined ? { seg, bytes } : { seg, bytes, taskId });
    return seg;
  }

  #settle(waiter: Waiter, err?: unknown): void {
    const same = this.#unsettled.get(waiter.taskId);
    const at = same?.indexOf(waiter) ?? -1;
    if (at >= 0) same!.splice(at, 1);
    if (same?.length === 0) this.#unsettled.delete(waiter.taskId);
    if (err === undefined) waiter.resolve();
    else waiter.reject(err);
  }

  /** After a write: confirmed results are safe, the others wait for the next sync. */
  #written(waiters: readonly Waiter[]): void {
    for (const w of waiters) {
      if (w.confirmed) this.#settle(w);
      else this.#unsynced.add(w);
    }
    if (this.#unsynced.size === 0 || this.#syncTimer !== undefined) return;
    if (this.#syncDelayMs === 0) {
      this.#syncWanted = true;
      this.#schedule();
      return;
    }
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      if (this.#unsynced.size === 0) return;
      this.#syncWanted = true;
      this.#schedule();
    }, this.#syncDelayMs);
  }

  #schedule(): void {
    // Gather what arrives in this turn (a frame of results from the interchange) into one write.
    if (this.#writing || this.#timer) return;
    this.#timer = setImmediate(() => {
      this.#timer = undefined;
      this.#startDrain();
    });
  }

  #startDrain(): void {
    this.#writing = this.#drain().finally(() => {
      this.#writing = undefined;
      // Records queued between the drain's last look and now.
      if (this.#queue.length > 0) this.#schedule();
    });
  }

  async #idle(): Promise<void> {
    if (this.#syncTimer !== undefined && this.#closed) {
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
      this.#syncWanted = true;
      this.#schedule();
    }
    while (this.#timer || this.#writing || this.#syncing) {
      if (this.#timer) {
        clearImmediate(this.#timer);
        this.#timer = undefined;
        this.#startDrain();
      }
      await this.#writing;
      await this.#syncing;
    }
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#syncWanted) {
      const queue = this.#queue;
      const waiters = this.#waiters;
      const sync = this.#syncWanted;
      this.#queue = [];
      this.#waiters = [];
      this.#syncWanted = false;
      try {
        // Consecutive records of one segment go in one write; a batch spans two at a rotation.
        let i = 0;
        while (i < queue.length) {
          const seg = queue[i]!.seg;
          let j = i;
          let size = 0;
          while (j < queue.length && queue[j]!.seg === seg) size += queue[j++]!.bytes.byteLength;
          const buf = new Uint8Array(size);
          let off = 0;
          for (let k = i; k < j; k++) {
            buf.set(queue[k]!.bytes, off);
            off += queue[k]!.bytes.byteLength;
          }
          const file = await this.#fileFor(seg);
          for (let w = 0; w < buf.byteLength;) w += await file.write(buf.subarray(w));
          // A segment left behind must be on disk before the next one takes over.
          if (j < queue.length) await file.syncData();
          i = j;
        }
      } catch (err) {
        for (const q of queue) {
          if (q.taskId !== undefined && this.#pending.get(q.taskId) === q.seg) {
            this.#pending.delete(q.taskId);
            this.#segments.get(q.seg)!.pending--;
          }
        }
        // A half-written segment is not appended to again: its tail may be torn.
        this.#file?.close();
        this.#file = undefined;
        if (this.#fileNo === this.#active) {
          this.#active++;
          this.#activeBytes = 0;
        }
        for (const w of waiters) {
          this.#settle(
            w,
            new Error(`Cannot write to result journal "${this.dir}"`, { cause: err }),
          );
        }
        waiters.length = 0;
      } finally {
        for (const q of queue) this.#segments.get(q.seg)!.queued--;
      }
      this.#written(waiters);
      if (sync) this.#startSync();
      await this.#deleteSettled();
    }
  }

  /**
   * Starts a sync after the one in progress, if any, without waiting for it: an `fdatasync` can
   * take tens of milliseconds, and a result that arrives meanwhile is written at once all the
   * same, so that it is on file (and survives the daemon's death) in the turn it arrived, before
   * its publish can reach the user.
   */
  #startSync(): void {
    const previous = this.#syncing;
    const syncing: Promise<void> = (async () => {
      await previous;
      await this.#sync();
    })().finally(() => {
      if (this.#syncing === syncing) this.#syncing = undefined;
    });
    this.#syncing = syncing;
  }

  /** Syncs the open segment and settles every written result that waited for it. */
  async #sync(): Promise<void> {
    const waiting = [...this.#unsynced];
    this.#unsynced.clear();
    clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    if (waiting.length === 0) return;
    try {
      // Earlier segments were synced when the open one took over (`#fileFor`).
      await this.#file?.syncData();
      for (const w of waiting) this.#settle(w);
    } catch (err) {
      for (const w of waiting) {
        this.#settle(w, new Error(`Cannot sync result journal "${this.dir}"`, { cause: err }));
      }
    }
  }

  async #fileFor(seg: number): Promise<Deno.FsFile> {
    if (this.#file && this.#fileNo === seg) return this.#file;
    // A sync may still run on the segment left behind: its file stays open until it is done.
    await this.#syncing;
    // Results written to the segment left behind and not synced yet: sync them now.
    if (this.#file && this.#unsynced.size > 0) await this.#file.syncData();
    this.#file?.close();
    this.#file = undefined;
    const file = await Deno.open(join(this.dir, segmentName(seg)), {
      write: true,
      create: true,
      append: true,
      mode: 0o600,
    });
    this.#file = file;
    this.#fileNo = seg;
    await syncDir(this.dir);
    return file;
  }

  /** Deletes every segment other than the active one whose results are all confirmed. */
  async #deleteSettled(): Promise<void> {
    for (const [n, s] of this.#segments) {
      if (n === this.#active || s.pending > 0 || s.queued > 0) continue;
      this.#segments.delete(n);
      // A sync may still run on its file: closed once that is done.
      if (n === this.#fileNo) await this.#syncing;
      if (n === this.#fileNo) {
        this.#file?.close();
        this.#file = undefined;
        this.#fileNo = -1;
      }
      // One left behind by a failed delete is read again at the next open: harmless.
      await Deno.remove(join(this.dir, segmentName(n))).catch(() => {});
    }
  }
}
