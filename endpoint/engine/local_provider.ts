/**
 * The local provider: each block is one manager subprocess on this machine, its stdout and
 * stderr kept in `<log_dir>/block_<id>.log`.
 *
 * @module
 */
import { join } from "node:path";
import type { BlockHandle, BlockStatus, Provider } from "./provider.ts";

/** Options of {@linkcode LocalProvider}. */
export interface LocalProviderOptions {
  /** Folder of the block logs (created). */
  logDir: string;
  /** Seconds `stop` waits after SIGTERM before SIGKILL. @default 10 */
  graceS?: number;
}

class LocalBlock implements BlockHandle {
  readonly blockId: string;
  readonly child: Deno.ChildProcess;
  readonly ended: Promise<string>;
  readonly logPath: string;
  status: BlockStatus = { state: "running" };
  constructor(blockId: string, child: Deno.ChildProcess, log: Deno.FsFile, logPath: string) {
    this.blockId = blockId;
    this.child = child;
    this.logPath = logPath;
    const copy = (s: ReadableStream<Uint8Array>) =>
      s.pipeTo(new WritableStream({ write: (c) => log.write(c).then(() => {}) }));
    const copied = Promise.all([copy(child.stdout), copy(child.stderr)]).catch(() => {});
    this.ended = (async () => {
      const status = await child.status;
      await copied;
      log.close();
      this.status = status.success
        ? { state: "completed" }
        : { state: "failed", message: `exit code ${status.code}` };
      return status.signal ? `killed by ${status.signal}` : `exited with code ${status.code}`;
    })();
  }
  signal(sig: Deno.Signal): void {
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }
}

/** Runs each block as a local subprocess. */
export class LocalProvider implements Provider {
  /** Always `"local"`. */
  readonly label = "local";
  readonly #logDir: string;
  readonly #graceS: number;

  /** A provider that logs under `options.logDir`. */
  constructor(options: LocalProviderOptions) {
    this.#logDir = options.logDir;
    this.#graceS = options.graceS ?? 10;
  }

  /** Starts a manager subprocess. */
  async start(
    blockId: string,
    command: readonly string[],
    env: Record<string, string>,
  ): Promise<BlockHandle> {
    await Deno.mkdir(this.#logDir, { recursive: true });
    const logPath = join(this.#logDir, `block_${blockId}.log`);
    const log = await Deno.open(logPath, { create: true, append: true });
    const [cmd, ...args] = command;
    try {
      const child = new Deno.Command(cmd!, {
        args,
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      return new LocalBlock(blockId, child, log, logPath);
    } catch (err) {
      log.close();
      throw err;
    }
  }

  /** Running until the subprocess exits. */
  status(handles: readonly BlockHandle[]): Promise<BlockStatus[]> {
    return Promise.resolve(
      handles.map((h) => h instanceof LocalBlock ? h.status : { state: "unknown" }),
    );
  }

  /** SIGTERM, then SIGKILL after the grace period; waits for the exit. */
  async stop(handle: BlockHandle): Promise<void> {
    if (!(handle instanceof LocalBlock)) throw new TypeError("Not a block of this provider");
    handle.signal("SIGTERM");
    handle.signal("SIGCONT"); // a stopped (hung) manager must wake to act on SIGTERM
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, this.#graceS * 1000)));
    await Promise.race([handle.ended, grace]);
    clearTimeout(timer);
    handle.signal("SIGKILL");
    await handle.ended;
  }
}
