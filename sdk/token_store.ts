/**
 * The token store: each environment's access and refresh tokens, in `~/.funcx/` (mode 0600 in a
 * 0700 folder). Where the runtime has `node:sqlite` (Deno; Node 22.5 and later) it is an SQLite
 * file, `storage.db`; where it does not (Node 20, or Node 22 before 22.13 without
 * `--experimental-sqlite`) a JSON file beside it, `storage.json`. A runtime reads the kind it
 * writes. Several processes may share either: a refresh happens under the file's write lock, so
 * two processes never spend one refresh token.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { chmod, mkdir, open, stat } from "node:fs/promises";
import process from "node:process";
import type { StoredTokens, TokenBackend } from "./_token_backend.ts";
import { TokenFile } from "./_token_file.ts";
import { type DatabaseClass, TokenDatabase } from "./_token_sqlite.ts";

/** How the tokens are kept: an SQLite file or a JSON file. */
export type TokenStoreFormat = "sqlite" | "json";

/** Options of {@linkcode TokenStore.open}. */
export interface TokenStoreOptions {
  /**
   * How to keep the tokens.
   *
   * @default {"sqlite" where the runtime has `node:sqlite`, else "json"}
   */
  format?: TokenStoreFormat;
}

let sqlite: Promise<DatabaseClass | undefined> | undefined;

/** `node:sqlite`, loaded on first use: importing it at the top would fail on Node 20. */
function loadSqlite(): Promise<DatabaseClass | undefined> {
  sqlite ??= import("node:sqlite").then((m) => m.DatabaseSync, () => undefined);
  return sqlite;
}

/**
 * The default store path: `$FUNCX_CONFIG_DIR/storage.db` or `~/.funcx/storage.db` (the JSON
 * store, where it is used, is `storage.json` beside it).
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
 * The file a store at `path` is in: `path` itself for SQLite; for JSON, `path` with `.db`
 * replaced by `.json` (or `.json` added).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenStoreFile } from "./token_store.ts";
 * assert.equal(tokenStoreFile("/h/.funcx/storage.db", "json"), "/h/.funcx/storage.json");
 * assert.equal(tokenStoreFile("/h/.funcx/storage.db", "sqlite"), "/h/.funcx/storage.db");
 * ```
 */
export function tokenStoreFile(path: string, format: TokenStoreFormat): string {
  if (format === "sqlite") return path;
  return path.endsWith(".db") ? `${path.slice(0, -3)}.json` : `${path}.json`;
}

/**
 * The format this runtime uses unless told otherwise: `"sqlite"` where it has `node:sqlite`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultTokenStoreFormat } from "./token_store.ts";
 * assert.equal(await defaultTokenStoreFormat(), "sqlite"); // Deno has node:sqlite
 * ```
 */
export async function defaultTokenStoreFormat(): Promise<TokenStoreFormat> {
  return (await loadSqlite()) ? "sqlite" : "json";
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
  readonly #backend: TokenBackend;
  /** The file the tokens are in. */
  readonly path: string;
  /** How they are kept. */
  readonly format: TokenStoreFormat;

  private constructor(backend: TokenBackend, format: TokenStoreFormat) {
    this.#backend = backend;
    this.path = backend.path;
    this.format = format;
  }

  /**
   * Opens (creating, mode 0600 in a 0700 folder) the store at `path`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TokenStore } from "./token_store.ts";
   * const dir = await Deno.makeTempDir();
   * for (const format of ["sqlite", "json"] as const) {
   *   const store = await TokenStore.open(`${dir}/storage.db`, { format });
   *   store.set("local", {
   *     serviceAddress: "http://127.0.0.1:8000",
   *     accessToken: format,
   *     expiresAt: Date.now() + 60_000,
   *     refreshToken: null,
   *   });
   *   assert.equal(store.get("local")?.accessToken, format);
   *   store.close();
   * }
   * ```
   */
  static async open(
    path: string = defaultTokenStorePath(),
    options: TokenStoreOptions = {},
  ): Promise<TokenStore> {
    const format = options.format ?? await defaultTokenStoreFormat();
    const file = tokenStoreFile(path, format);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    // Create the file 0600 before SQLite does, so tokens are never readable by others.
    await (await open(file, "a", 0o600)).close();
    await chmod(file, 0o600);
    if (format === "json") return new TokenStore(new TokenFile(file), format);
    const Database = await loadSqlite();
    if (!Database) {
      throw new Error(
        `Cannot open the token store "${file}" as SQLite: this runtime has no node:sqlite ` +
          "(use Node 22.13 or later, or the JSON format)",
      );
    }
    return new TokenStore(new TokenDatabase(Database, file), format);
  }

  /**
   * Whether a store exists at `path` (in the format this runtime would open it with), without
   * creating one.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TokenStore } from "./token_store.ts";
   * assert.equal(await TokenStore.exists(`${await Deno.makeTempDir()}/storage.db`), false);
   * ```
   */
  static async exists(
    path: string = defaultTokenStorePath(),
    options: TokenStoreOptions = {},
  ): Promise<boolean> {
    const format = options.format ?? await defaultTokenStoreFormat();
    return await stat(tokenStoreFile(path, format)).then(() => true, () => false);
  }

  /** The tokens of an environment. */
  get(environment: string): StoredTokens | undefined {
    return this.#backend.get(environment);
  }

  /** Saves an environment's tokens. */
  set(environment: string, tokens: StoredTokens): void {
    this.#backend.set(environment, tokens);
  }

  /** The environments with stored tokens, sorted. */
  environments(): string[] {
    return this.#backend.environments();
  }

  /** Forgets an environment's tokens. */
  delete(environment: string): void {
    this.#backend.delete(environment);
  }

  /**
   * Runs `fn` holding the store's write lock (other processes wait), keeping what it wrote.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#backend.exclusive(fn);
  }

  /** Closes the file. */
  close(): void {
    this.#backend.close();
  }
}
