/**
 * The checkpoint thread of {@linkcode WalCheckpointer}: its own connection to the store's file,
 * a passive checkpoint every `everyMs`, and a last one when told to stop.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { DatabaseSync } from "node:sqlite";
import type { CheckpointerCommand, CheckpointerReport } from "./_wal_checkpointer.ts";

let db: DatabaseSync | undefined;
let timer: ReturnType<typeof setInterval> | undefined;

function report(r: CheckpointerReport): void {
  self.postMessage(r);
}

function checkpoint(): void {
  if (!db) return;
  try {
    const row = db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as
      | { busy: number; log: number; checkpointed: number }
      | undefined;
    if (row) report({ log: Number(row.log), checkpointed: Number(row.checkpointed) });
  } catch (err) {
    // Another connection checkpointing at the same moment: the next round does it.
    if (/locked|busy/i.test(String(err))) return;
    report({ error: String(err) });
  }
}

self.onmessage = (e: MessageEvent<CheckpointerCommand>) => {
  const cmd = e.data;
  if ("stop" in cmd) {
    if (timer !== undefined) clearInterval(timer);
    checkpoint();
    db?.close();
    db = undefined;
    report({ stopped: true });
    return;
  }
  try {
    db = new DatabaseSync(cmd.path);
    db.exec("PRAGMA busy_timeout = 1000;");
  } catch (err) {
    report({ error: String(err) });
    return;
  }
  timer = setInterval(checkpoint, cmd.everyMs);
};
