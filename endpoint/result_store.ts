/**
 * Results that are not yet confirmed by the broker, kept on disk so that neither a lost broker
 * connection nor an endpoint crash loses them: `<endpoint dir>/unacked_results/<task id>` (mode
 * 0700), one file per task holding the packed result message. The daemon writes a result here
 * when its publish is not confirmed, sends stored results first after every (re)connect, and
 * deletes a file once its publish is confirmed. A task whose result is on disk is safe, so its
 * task message may be acked.
 *
 * @module
 */
import { join } from "node:path";

const SAFE_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A directory of packed results keyed by task id. */
export class ResultStore {
  /** The directory holding the results. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Opens (creating it if needed) `<endpointDir>/unacked_results` and checks it can write, list
   * and delete a file there.
   *
   * @example
   * ```ts
   * import { ResultStore } from "./result_store.ts";
   * const dir = await Deno.makeTempDir();
   * const store = await ResultStore.open(dir);
   * await store.put("t1", new Uint8Array([1, 2]));
   * console.assert((await store.keys()).includes("t1"));
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(endpointDir: string): Promise<ResultStore> {
    const dir = join(endpointDir, "unacked_results");
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.chmod(dir, 0o700);
    const probe = join(dir, ".test-reading-and-writing");
    try {
      await Deno.writeFile(probe, new Uint8Array([1]));
      let seen = false;
      for await (const e of Deno.readDir(dir)) {
        if (e.name === ".test-reading-and-writing") seen = true;
      }
      if (!seen) throw new Error("the probe file was not listed");
      await Deno.remove(probe);
    } catch (err) {
      throw new Error(`Cannot use result store "${dir}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new ResultStore(dir);
  }

  #path(taskId: string): string {
    if (!SAFE_KEY.test(taskId)) throw new TypeError(`Invalid result store key "${taskId}"`);
    return join(this.dir, taskId);
  }

  /** Stores a result durably (written to a temporary file, synced, then renamed into place). */
  async put(taskId: string, packed: Uint8Array): Promise<void> {
    const path = this.#path(taskId);
    const tmp = join(this.dir, `.${taskId}.${crypto.randomUUID().slice(0, 8)}.tmp`);
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      let off = 0;
      while (off < packed.byteLength) off += await f.write(packed.subarray(off));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  }

  /** A stored result, or `undefined`. */
  async get(taskId: string): Promise<Uint8Array | undefined> {
    try {
      return await Deno.readFile(this.#path(taskId));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
  }

  /** Whether a result is stored for `taskId`. */
  async has(taskId: string): Promise<boolean> {
    try {
      await Deno.stat(this.#path(taskId));
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  }

  /** Removes a stored result; no error if there is none. */
  async discard(taskId: string): Promise<void> {
    await Deno.remove(this.#path(taskId)).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }

  /** Task ids with a stored result (hidden and temporary files left out), oldest first. */
  async keys(): Promise<string[]> {
    const found: { name: string; mtime: number }[] = [];
    for await (const e of Deno.readDir(this.dir)) {
      if (!e.isFile || e.name.startsWith(".")) continue;
      const st = await Deno.stat(join(this.dir, e.name)).catch(() => undefined);
      if (st) found.push({ name: e.name, mtime: st.mtime?.getTime() ?? 0 });
    }
    return found.sort((a, b) => a.mtime - b.mtime).map((f) => f.name);
  }

  /** Number of stored results. */
  async size(): Promise<number> {
    return (await this.keys()).length;
  }

  /** Removes every stored result. */
  async clear(): Promise<void> {
    for (const k of await this.keys()) await this.discard(k);
  }
}
