/**
 * Opens the service's {@linkcode Store}: picks SQLite or PostgreSQL from where the data lives and
 * turns a database that cannot be used into a {@linkcode StoreUnavailableError} saying what to
 * check. The service entry point and the tests open stores here; the routes only see `Store`.
 *
 * @module
 */
import { redactUrl } from "./_url.ts";
import { PostgresStore } from "./postgres_store.ts";
import { SqliteStore } from "./sqlite_store.ts";
import { type Store, StoreUnavailableError } from "./store.ts";

/** Options of {@linkcode openStore}. */
export interface StoreOptions {
  /** Seconds a task and its result are kept. @default 1209600 (two weeks) */
  taskTtlS?: number;
  /** Most connections to PostgreSQL (ignored for SQLite). @default 10 */
  maxConnections?: number;
  /** Seconds to wait for PostgreSQL to accept a connection (ignored for SQLite). @default 10 */
  connectTimeoutS?: number;
  /**
   * SQLite: sync every commit to disk before it returns (PostgreSQL does by default, with its
   * `synchronous_commit`). @default false
   */
  syncCommits?: boolean;
}

/** Whether `location` names a PostgreSQL database (`postgres://` or `postgresql://`). */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/**
 * Opens the store at `location`: a `postgres://` or `postgresql://` URL opens PostgreSQL,
 * anything else is a SQLite file path (`":memory:"` for a private in-memory one). Tables are
 * created when missing. Throws {@linkcode StoreUnavailableError} with the location (password
 * hidden) and what to check when the database cannot be used.
 */
export async function openStore(location: string, options: StoreOptions = {}): Promise<Store> {
  const taskTtlS = options.taskTtlS ?? 1209600;
  if (isPostgresUrl(location)) {
    try {
      return await PostgresStore.open(location, {
        taskTtlS,
        maxConnections: options.maxConnections ?? 10,
        connectTimeoutS: options.connectTimeoutS ?? 10,
      });
    } catch (err) {
      throw new StoreUnavailableError(
        `Cannot open the PostgreSQL database "${redactUrl(location)}": ${describe(err)}; ` +
          "check that PostgreSQL runs at that host and port, that the database exists and " +
          "that the user may log in to it",
        { cause: err },
      );
    }
  }
  try {
    return SqliteStore.open(location, { taskTtlS, syncCommits: options.syncCommits ?? false });
  } catch (err) {
    throw new StoreUnavailableError(
      `Cannot open the SQLite database "${location}": ${describe(err)}; check that its ` +
        "directory exists and is writable, and that the file is a SQLite database",
      { cause: err },
    );
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const message = err.message || String(code ?? err.name);
  return typeof code === "string" && !message.includes(code) ? `${message} (${code})` : message;
}
