/**
 * The token store as a JSON file, for runtimes without `node:sqlite` (Node before 22.5, or 22.5
 * to 22.12 without `--experimental-sqlite`): `storage.json` beside where `storage.db` would be,
 * mode 0600. Every write replaces the file whole (a temporary file renamed over it), and a lock
 * file (`storage.json.lock`, holding the owner's pid) serializes writers across processes, so two
 * processes renewing at once never spend one refresh token. A lock whose owner has died is taken
 * over.
 *
 * @module
 */
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import process from "node:process";
import type { StoredTokens, TokenBackend } from "./_token_backend.ts";

/** How long a writer waits for another process's lock, in ms. */
const WAIT_MS = 60_000;
/** A lock file without a readable pid (a writer died while creating it) counts as left after this. */
const UNREADABLE_STALE_MS = 10_000;

/** Exclusive sections of this process, by file: one at a time, then the lock file across processes. */
const sections = new Map<string, Promise<unknown>>();

function errorCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errorCode(err) === "EPERM";
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The tokens kept in a JSON file; see the module doc. */
export class TokenFile implements TokenBackend {
  /** The JSON file. */
  readonly path: string;
  readonly #lock: string;
  /** Depth of this store's exclusive sections: inside one, the lock is already held. */
  #held = 0;

  /**
   * Opens the file at `path`; a missing or empty file is an empty store.
   *
   * @param path The JSON file (created 0600 by the caller); its folder must exist.
   */
  constructor(path: string) {
    this.path = path;
    this.#lock = `${path}.lock`;
    this.#read(); // a file that is not a token store fails here, at open
  }

  /** The tokens of an environment. */
  get(environment: string): StoredTokens | undefined {
    return this.#read()[environment];
  }

  /** Saves an environment's tokens. */
  set(environment: string, tokens: StoredTokens): void {
    this.#update((all) => {
      all[environment] = {
        serviceAddress: tokens.serviceAddress,
        accessToken: tokens.accessToken,
        expiresAt: tokens.expiresAt,
        refreshToken: tokens.refreshToken,
      };
    });
  }

  /** The environments with stored tokens, sorted. */
  environments(): string[] {
    return Object.keys(this.#read()).sort();
  }

  /** Forgets an environment's tokens. */
  delete(environment: string): void {
    this.#update((all) => {
      delete all[environment];
    });
  }

  /** Runs `fn` holding the lock (other processes wait). */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const before = sections.get(this.path) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    sections.set(this.path, mine);
    await before.catch(() => {});
    try {
      const deadline = Date.now() + WAIT_MS;
      // Inside this process's queue, a lock naming this pid is one a dead process with the same
      // pid left, or a sync write's that is gone: take it.
      while (this.#tryLock() === "busy") {
        this.#checkDeadline(deadline);
        await new Promise((r) => setTimeout(r, 25));
      }
      this.#held++;
      try {
        return await fn();
      } finally {
        this.#held--;
        rmSync(this.#lock, { force: true });
      }
    } finally {
      done();
      if (sections.get(this.path) === mine) sections.delete(this.path);
    }
  }

  /** Nothing to close: the file is opened for each read and write. */
  close(): void {}

  #read(): Record<string, StoredTokens> {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (err) {
      if (errorCode(err) === "ENOENT") return {};
      throw err;
    }
    if (text.trim() === "") return {};
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new Error(
        `Cannot read the token store "${this.path}": it is not JSON (remove it and log in again)`,
        { cause: err },
      );
    }
    const tokens = (body as { tokens?: unknown } | null)?.tokens;
    if (typeof tokens !== "object" || tokens === null || Array.isArray(tokens)) {
      throw new Error(
        `Cannot read the token store "${this.path}": it has no "tokens" object (remove it and ` +
          "log in again)",
      );
    }
    const out: Record<string, StoredTokens> = {};
    for (const [environment, raw] of Object.entries(tokens as Record<string, unknown>)) {
      const t = raw as Record<string, unknown>;
      out[environment] = {
        serviceAddress: String(t["serviceAddress"]),
        accessToken: String(t["accessToken"]),
        expiresAt: Number(t["expiresAt"]),
        refreshToken: typeof t["refreshToken"] === "string" ? t["refreshToken"] : null,
      };
    }
    return out;
  }

  /** Read, change and replace the file, under the lock unless an exclusive section holds it. */
  #update(change: (all: Record<string, StoredTokens>) => void): void {
    const locked = this.#held === 0 && this.#lockSync();
    try {
      const all = this.#read();
      change(all);
      const tmp = `${this.path}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify({ tokens: all }, null, 2) + "\n", { mode: 0o600 });
      renameSync(tmp, this.path);
    } finally {
      if (locked) rmSync(this.#lock, { force: true });
    }
  }

  /** Takes the lock, waiting for another process; false when this process already holds it. */
  #lockSync(): boolean {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const state = this.#tryLock();
      if (state === "acquired") return true;
      // Held by this process: by an exclusive section of another store on the same file, which
      // waits on an await, so this synchronous write cannot interleave with its reads.
      if (state === "ours") return false;
      this.#checkDeadline(deadline);
      sleepSync(25);
    }
  }

  #tryLock(): "acquired" | "ours" | "busy" {
    try {
      writeFileSync(this.#lock, String(process.pid), { flag: "wx", mode: 0o600 });
      return "acquired";
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
    }
    let owner: number;
    let age: number;
    try {
      owner = Number(readFileSync(this.#lock, "utf8"));
      age = Date.now() - statSync(this.#lock).mtimeMs;
    } catch {
      return "busy"; // released meanwhile: try again
    }
    if (owner === process.pid) return "ours";
    const valid = Number.isSafeInteger(owner) && owner > 0;
    if (valid ? !alive(owner) : age > UNREADABLE_STALE_MS) rmSync(this.#lock, { force: true });
    return "busy";
  }

  #checkDeadline(deadline: number): void {
    if (Date.now() < deadline) return;
    let owner = "another process";
    try {
      owner = `process ${readFileSync(this.#lock, "utf8").trim()}`;
    } catch {
      // gone meanwhile
    }
    throw new Error(
      `Cannot lock the token store "${this.path}": ${owner} has held "${this.#lock}" for over ` +
        `${WAIT_MS / 1000} s (remove that file if no funcX process is running)`,
    );
  }
}
