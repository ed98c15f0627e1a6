/**
 * The audit log: one JSON line per task state change (`received`, `running`, `finished`) with the
 * time, the service user, the local account, the function, the task, the endpoint and (when
 * finished) the outcome. Never arguments or results. The daemon writes it as tasks arrive and as
 * their results come back (`running` is stamped with the time the task reached its worker, from
 * the result's transitions). The file is appended to and kept at mode 0600.
 *
 * @module
 */
import { dirname } from "node:path";
import { type ResultMessage, type TaskMessage, TaskState } from "../sdk/protocol/mod.ts";

/** One line of the audit log. */
export interface AuditRecord {
  /** ISO 8601 time of the change. */
  time: string;
  /** `received`, `running` or `finished`. */
  event: "received" | "running" | "finished";
  /** The endpoint's id. */
  endpoint_id: string;
  /** The task's id. */
  task_id: string;
  /** The function's id, when the service sent it. */
  function_id: string | null;
  /** The service user who submitted the task, when the service sent it. */
  user: string | null;
  /** The local account the task runs as; null when it was refused before one was known. */
  local_user: string | null;
  /** (`finished` only) `success`, or `failed: <error name>`. */
  outcome?: string;
  /** (`finished` only, when more than one) times the task was started. */
  attempts?: number;
}

/** An open audit log file. */
export class AuditLog {
  readonly path: string;
  readonly #file: Deno.FsFile;
  readonly #encoder = new TextEncoder();
  #closed = false;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /** Opens (creates) `path` for appending, mode 0600 even if it existed with another mode. */
  static async open(path: string): Promise<AuditLog> {
    await Deno.mkdir(dirname(path), { recursive: true });
    const file = await Deno.open(path, { append: true, create: true, mode: 0o600 });
    await Deno.chmod(path, 0o600);
    return new AuditLog(path, file);
  }

  /** Appends one record as a line (one write, so lines never interleave). */
  write(record: AuditRecord): void {
    if (this.#closed) return;
    const bytes = this.#encoder.encode(JSON.stringify(record) + "\n");
    let at = 0;
    while (at < bytes.byteLength) at += this.#file.writeSync(bytes.subarray(at));
  }

  /** Closes the file; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }
}

/** The audit lines of one task, written by {@linkcode taskAudit}. */
export interface TaskAudit {
  /** Writes `received` with the task's local account (only the first call writes). */
  received(account: string | null): void;
  /** Writes `running` for each start on a worker, then `finished` with the outcome. */
  finished(result: ResultMessage): void;
}

/**
 * Audit lines of one task: `received` once (with its account), then `running`, `finished`.
 * `receivedNs` is when the endpoint took it, in nanoseconds since the epoch.
 */
export function taskAudit(
  log: AuditLog,
  endpointId: string,
  task: TaskMessage,
  receivedNs: bigint,
): TaskAudit {
  const base = {
    endpoint_id: endpointId,
    task_id: task.task_id,
    function_id: task.function_id ?? null,
    user: task.user ?? null,
  };
  let account: string | null = null;
  let said = false;
  const received = (a: string | null) => {
    if (said) return;
    said = true;
    account = a;
    log.write({ time: isoOf(receivedNs), event: "received", ...base, local_user: a });
  };
  const finished = (result: ResultMessage) => {
    received(null);
    // One line per start on a worker: a task run again after a lost worker has two.
    for (const t of result.task_statuses ?? []) {
      if (t.state !== TaskState.RUNNING) continue;
      log.write({ time: isoOf(t.timestamp), event: "running", ...base, local_user: account });
    }
    log.write({
      time: new Date().toISOString(),
      event: "finished",
      ...base,
      local_user: account,
      outcome: result.error_details ? `failed: ${result.error_details.code}` : "success",
      ...(result.attempts ? { attempts: result.attempts } : {}),
    });
  };
  return { received, finished };
}

/** An ISO 8601 time from nanoseconds since the epoch. */
function isoOf(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}
