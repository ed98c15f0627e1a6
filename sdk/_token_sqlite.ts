/**
 * The token store as an SQLite file (`node:sqlite`, in Deno and in Node 22.5 and later): SQLite
 * serializes the writes of several processes, and a refresh happens inside a write transaction so
 * two processes never spend one refresh token.
 *
 * @module
 */
import type { DatabaseSync } from "node:sqlite";
import type { StoredTokens, TokenBackend } from "./_token_backend.ts";

/** `node:sqlite`'s database class. */
export type DatabaseClass = typeof DatabaseSync;

/** The tokens kept in an SQLite file. */
export class TokenDatabase implements TokenBackend {
  readonly #db: DatabaseSync;
  #open = true;
  /** The SQLite file. */
  readonly path: string;

  /**
   * Opens the database at `path` (the file must exist, mode 0600) and creates its table.
   *
   * @param Database `node:sqlite`'s `DatabaseSync`, loaded by the caller.
   * @param path The file.
   */
  constructor(Database: DatabaseClass, path: string) {
    this.path = path;
    this.#db = new Database(path);
    this.#db.exec("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;");
    this.#db.exec(
      "CREATE TABLE IF NOT EXISTS tokens (environment TEXT PRIMARY KEY, service TEXT NOT NULL, " +
        "access_token TEXT NOT NULL, expires_at REAL NOT NULL, refresh_token TEXT)",
    );
  }

  /** The tokens of an environment. */
  get(environment: string): StoredTokens | undefined {
    const row = this.#db.prepare("SELECT * FROM tokens WHERE environment = ?").get(environment);
    if (!row) return undefined;
    return {
      serviceAddress: String(row["service"]),
      accessToken: String(row["access_token"]),
      expiresAt: Number(row["expires_at"]),
      refreshToken: row["refresh_token"] === null ? null : String(row["refresh_token"]),
    };
  }

  /** Saves an environment's tokens. */
  set(environment: string, tokens: StoredTokens): void {
    this.#db.prepare(
      "INSERT INTO tokens (environment, service, access_token, expires_at, refresh_token) " +
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(environment) DO UPDATE SET service = excluded.service, " +
        "access_token = excluded.access_token, expires_at = excluded.expires_at, " +
        "refresh_token = excluded.refresh_token",
    ).run(
      environment,
      tokens.serviceAddress,
      tokens.accessToken,
      tokens.expiresAt,
      tokens.refreshToken,
    );
  }

  /** The environments with stored tokens. */
  environments(): string[] {
    return this.#db.prepare("SELECT environment FROM tokens ORDER BY environment").all()
      .map((r) => String(r["environment"]));
  }

  /** Forgets an environment's tokens. */
  delete(environment: string): void {
    this.#db.prepare("DELETE FROM tokens WHERE environment = ?").run(environment);
  }

  /** Runs `fn` holding the database's write lock (other processes wait), committing what it wrote. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = await fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Closes the database. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#db.close();
  }
}
