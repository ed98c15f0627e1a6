/**
 * The local provider's default (`engine.local_manager: in_process`): each block is a manager
 * that runs inside the endpoint daemon, attached to the interchange over an in-memory link, and
 * starts its worker subprocesses itself. There is no manager process: a task crosses one process
 * boundary fewer each way, with no TCP frame to encode or decode. What a manager does is the
 * same code ({@linkcode Manager.serve}): `WorkerLost` and its retries, walltime, the memory
 * limit, the sandbox and cancel, accelerator pinning, container workers and warm routing, MPI
 * mode, and the compiled binary's workers. Blocks scale in and out as before; a block is then a
 * pool of workers in the daemon. `local_manager: process` keeps a manager subprocess per block
 * ({@linkcode LocalProvider}).
 *
 * When the daemon dies, its workers see their stdin end and exit at once: nothing is orphaned.
 *
 * @module
 */
import { Manager, type ManagerOptions, OPTIONS_ENV } from "./manager.ts";
import type { Link } from "./manager_link.ts";
import type { FromManager, ToManager } from "./manager_protocol.ts";
import type { BlockHandle, BlockStatus, Provider } from "./provider.ts";

/** Attaches a manager to the interchange; gives the manager's side of the link. */
export type AttachManager = (managerId: string, blockId: string) => Link<FromManager, ToManager>;

class InProcessBlock implements BlockHandle {
  readonly blockId: string;
  readonly ended: Promise<string>;
  readonly stopper: AbortController;
  status: BlockStatus = { state: "running" };

  constructor(blockId: string, stopper: AbortController, serving: Promise<void>) {
    this.blockId = blockId;
    this.stopper = stopper;
    this.ended = serving.then(
      () => {
        this.status = { state: "completed" };
        return "stopped";
      },
      (err: Error) => {
        this.status = { state: "failed", message: err.message };
        return `failed: ${err.message}`;
      },
    );
  }
}

/** Runs each block as a manager in this process. */
export class InProcessProvider implements Provider {
  /** Always `"local"`, as {@linkcode LocalProvider}. */
  readonly label = "local";
  readonly #attach: AttachManager;

  /** A provider whose managers attach to the interchange with `attach`. */
  constructor(attach: AttachManager) {
    this.#attach = attach;
  }

  /**
   * Starts a block's manager in this process. `command` is ignored (the manager is this
   * program); `env` carries the manager's options, as for a manager process.
   */
  start(
    blockId: string,
    _command: readonly string[],
    env: Record<string, string>,
  ): Promise<BlockHandle> {
    const json = env[OPTIONS_ENV];
    if (!json) {
      return Promise.reject(new Error(`Cannot start block ${blockId}: ${OPTIONS_ENV} is not set`));
    }
    const options = JSON.parse(json) as ManagerOptions;
    let link: Link<FromManager, ToManager>;
    try {
      link = this.#attach(options.manager_id, blockId);
    } catch (err) {
      return Promise.reject(err);
    }
    const stopper = new AbortController();
    const serving = Manager.serve(options, link, stopper.signal);
    return Promise.resolve(new InProcessBlock(blockId, stopper, serving));
  }

  /** Running until its manager returns. */
  status(handles: readonly BlockHandle[]): Promise<BlockStatus[]> {
    return Promise.resolve(
      handles.map((h) => h instanceof InProcessBlock ? h.status : { state: "unknown" }),
    );
  }

  /** Stops the block's workers (its pool's grace, then SIGKILL) and waits for them. */
  async stop(handle: BlockHandle): Promise<void> {
    if (!(handle instanceof InProcessBlock)) throw new TypeError("Not a block of this provider");
    handle.stopper.abort();
    await handle.ended;
  }
}
