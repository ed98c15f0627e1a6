/**
 * What the running daemon says about its broker link, for `funcx-endpoint list`:
 * `<endpoint dir>/daemon_status.json`, rewritten (atomically, not synced) when the link comes up
 * or goes down and before every reconnect attempt, and removed when the daemon stops. Only read
 * while the pid file names a live daemon, so a file left by a crash is never believed.
 *
 * @module
 */
import { join } from "node:path";

/** The daemon's broker link as it last wrote it. */
export interface DaemonStatus {
  /** `connected`, or `disconnected` while it waits to reconnect. */
  state: "connected" | "disconnected";
  /** The broker's `host:port`. */
  broker: string;
  /** When this state began (ISO 8601). */
  since: string;
  /** Failed attempts in a row (0 when connected). */
  attempt: number;
  /** When the next attempt is due (ISO 8601), while disconnected. */
  nextRetryAt: string | null;
  /** Why the last attempt failed. */
  lastError: string | null;
  /** Results on disk waiting for the broker. */
  resultsWaiting: number;
  /** Tasks being run. */
  tasksRunning: number;
}

/** Path of the status file of an endpoint directory. */
export function statusFilePath(endpointDir: string): string {
  return join(endpointDir, "daemon_status.json");
}

/** Writes the status file (temporary file, then rename); errors are the caller's to log. */
export async function writeStatusFile(endpointDir: string, status: DaemonStatus): Promise<void> {
  const path = statusFilePath(endpointDir);
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(status) + "\n", { mode: 0o600 });
  await Deno.rename(tmp, path);
}

/** The status file, or `undefined` when there is none or it cannot be read. */
export async function readStatusFile(endpointDir: string): Promise<DaemonStatus | undefined> {
  try {
    const data = JSON.parse(await Deno.readTextFile(statusFilePath(endpointDir)));
    return data && typeof data.state === "string" ? data as DaemonStatus : undefined;
  } catch {
    return undefined;
  }
}

/** Removes the status file; no error if there is none. */
export async function removeStatusFile(endpointDir: string): Promise<void> {
  await Deno.remove(statusFilePath(endpointDir)).catch(() => {});
}
