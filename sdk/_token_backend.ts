/**
 * What the token store keeps and the two ways it keeps it: an SQLite file (`_token_sqlite.ts`)
 * where the runtime has `node:sqlite`, a JSON file (`_token_file.ts`) where it does not.
 *
 * @module
 */

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

/** A token file, as `TokenStore` uses it. */
export interface TokenBackend {
  /** The file the tokens are in. */
  readonly path: string;
  /** The tokens of an environment. */
  get(environment: string): StoredTokens | undefined;
  /** Saves an environment's tokens. */
  set(environment: string, tokens: StoredTokens): void;
  /** The environments with stored tokens, sorted. */
  environments(): string[];
  /** Forgets an environment's tokens. */
  delete(environment: string): void;
  /** Runs `fn` holding the file's write lock (other processes wait). */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /** Closes the file. */
  close(): void;
}
