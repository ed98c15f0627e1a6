/**
 * Write-ahead-log checkpoints of the SQLite store, run off the service's event loop. SQLite's
 * automatic checkpoint runs inside the commit that crosses its threshold, and writing the log
 * back and syncing the file stalls every request for milliseconds. The store turns it off
 * (`wal_autocheckpoint = 0`) and this runs `PRAGMA wal_checkpoint(PASSIVE)` on a connection of
 * its own in a worker thread instead: a passive checkpoint never waits on the store's
 * connection, and the next write after a complete one starts the log over.
 *
 * @module
 */

/** Milliseconds between checkpoints. */
export const CHECKPOINT_EVERY_MS = 1000;

/** What the thread is told: the database file, or to stop. */
export type CheckpointerCommand = { path: string; everyMs: number } | { stop: true };

/** What the thread answers: a checkpoint's counts (`-1` while busy) or an error. */
export type CheckpointerReport =
  | { log: number; checkpointed: number }
  | { error: string }
  | { stopped: true };

/** The thread's handle in the service: start with {@linkcode WalCheckpointer.start}. */
export class WalCheckpointer {
  readonly #worker: Worker;
  #last: CheckpointerReport | undefined;
  #stopped: Promise<void> | undefined;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  /**
   * Starts checkpointing the database at `path` every `everyMs`. `onFailure` hears the first
   * error (the thread could not open the file, a checkpoint failed, the thread died); the
   * thread stops then, so the caller can checkpoint the old way.
   */
  static start(
    path: string,
    everyMs: number,
    onFailure: (err: string) => void,
  ): WalCheckpointer {
    const worker = new Worker(new URL("./_wal_checkpointer_worker.ts", import.meta.url), {
      type: "module",
    });
    const c = new WalCheckpointer(worker);
    const fail = (err: string) => {
      if (c.#stopped) return;
      c.#stopped = Promise.resolve();
      worker.terminate();
      onFailure(err);
    };
    worker.onmessage = (e: MessageEvent<CheckpointerReport>) => {
      c.#last = e.data;
      if ("error" in e.data) fail(e.data.error);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      fail(e.message);
    };
    worker.postMessage({ path, everyMs } satisfies CheckpointerCommand);
    return c;
  }

  /** The latest report from the thread, if any yet. */
  get last(): CheckpointerReport | undefined {
    return this.#last;
  }

  /** Stops the thread after a last checkpoint (it closes its connection first). */
  stop(): Promise<void> {
    this.#stopped ??= new Promise<void>((resolve) => {
      const done = () => {
        this.#worker.terminate();
        resolve();
      };
      const timer = setTimeout(done, 2000);
      this.#worker.onmessage = (e: MessageEvent<CheckpointerReport>) => {
        this.#last = e.data;
        if ("stopped" in e.data) {
          clearTimeout(timer);
          done();
        }
      };
      this.#worker.onerror = () => {
        clearTimeout(timer);
        done();
      };
      this.#worker.postMessage({ stop: true } satisfies CheckpointerCommand);
    });
    return this.#stopped;
  }
}
