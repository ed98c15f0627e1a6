/**
 * The token store: `~/.funcx/storage.db`, an SQLite file (mode 0600) holding each environment's
 * access and refresh tokens. Several processes may share it: SQLite serializes their writes, and
 * a refresh happens inside a write transaction so two processes never spend one refresh token.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { chmod, mkdir, open } from "node:fs/promises";
import process from "node:process";

/** The tokens kept for one environment. */
export interface StoredTokens {
  /** The service they are for. */
  serviceAddress: string;
  /** Bearer token. */
  accessToken: string;
  /** When the access token expires, in ms since the epoch. */
  expiresAt: number;
  /** Token that renews the access token, if the login gave one. */
  refreshToken: string | null;
}

/**
 * The default store path: `$FUNCX_CONFIG_DIR/storage.db` or `~/.funcx/storage.db`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultTokenStorePath } from "./token_store.ts";
 * assert.ok(defaultTokenStorePath().endsWith("storage.db"));
 * ```
 */
export function defaultTokenStorePath(): string {
  const dir = process.env.FUNCX_CONFIG_DIR ?? join(process.env.HOME ?? ".", ".funcx");
  return join(dir, "storage.db");
}

/**
 * Access to the token file; open it with {@linkcode TokenStore.open}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TokenStore } from "./token_store.ts";
 * const store = await TokenStore.open(`${await Deno.makeTempDir()}/storage.db`);
 * assert.ok(store.environments().length === 0);
 * store.close();
 * ```
 */
export class TokenStore {
  readonly #db: DatabaseSync;
  #open = true;
  /** Where the file is. */
  readonly path: string;

  private constructor(db: DatabaseSync, path: string) {
    this.#db = db;
    this.path = path;
  }

  /**
   * Opens (creating, mode 0600 in a 0700 folder) the store at `path`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TokenStore } from "./token_store.ts";
   * const dir = await Deno.makeTempDir();
   * const store = await TokenStore.open(`${dir}/storage.db`);
   * store.set("local", {
   *   serviceAddress: "http://127.0.0.1:8000",
   *   accessToken: "a",
   *   expiresAt: Date.now() + 60_000,
   *   refreshToken: null,
   * });
   * assert.ok(store.get("local")?.accessToken === "a");
   * store.close();
   * ```
   */
  static async open(path: string = defaultTokenStorePath()): Promise<TokenStore> {
    const dir = path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".";
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Create the file 0600 before SQLite does, so tokens are never readable by others.
    await (await open(path, "a", 0o600)).close();
    await chmod(path, 0o600);
    const db = new DatabaseSync(path);
    db.exec("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;");
    db.exec(
      "CREATE TABLE IF NOT EXISTS tokens (environment TEXT PRIMARY KEY, service TEXT NOT NULL, " +
        "access_token TEXT NOT NULL, expires_at REAL NOT NULL, refresh_token TEXT)",
    );
    return new TokenStore(db, path);
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

  /**
   * Runs `fn` holding the store's write lock (other processes wait), committing what it wrote.
   */
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

  /** Closes the file. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#db.close();
  }
}
