/**
 * One worker subprocess of a pool: started with its environment (pinned to an accelerator, if
 * any) and its stderr appended to `worker_<n>.log`, it speaks length-prefixed frames (`hello`
 * handshake first, then a warm-up task, then one `task` at a time and its `result`) over a Unix
 * socket of its own (a plain `--allow-all` worker: no thread-pool trip per read, as stdin takes)
 * or stdin/stdout (a container worker, a worker with narrowed permissions, the compiled
 * binary's), and it is killed on purpose (walltime, cancel, memory) or dies on its own, which is
 * described from its exit status and the end of its log. The pool decides what it runs and when
 * it is replaced.
 *
 * @module
 */
import { packArgs, packBuffers, type ResultMessage, serialize } from "../../sdk/protocol/mod.ts";
import type { EngineFailure } from "./failure.ts";
import { fileTail } from "./file_tail.ts";
import { spawnWithoutHugePages } from "./huge_pages.ts";
import {
  type FrameSink,
  type FrameSource,
  FrameWriter,
  type FromWorker,
  readFrames,
  type ToWorker,
  WARM_UP_TASK_ID,
  WORKER_ONLY_ENV,
  WORKER_PROTOCOL_VERSION,
  WORKER_SOCKET_ENV,
} from "./frames.ts";
import type { PoolTask } from "./task_queue.ts";
import { join } from "node:path";

/** How long a worker's death by SIGTERM waits to be reported (see `describeDeath`). */
const SIGTERM_GRACE_MS = 500;

/** A process's resident memory in MiB, from `/proc/PID/status` (undefined when it is gone). */
export function residentMib(pid: number): number | undefined {
  if (pid <= 0) return undefined;
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

let warmUpBuffer: string | undefined;

/** The {@linkcode WARM_UP_TASK_ID} task: an async no-op that awaits a timer, as most tasks do. */
function warmUpTask(): string {
  const warm = async () => {
    await new Promise((r) => setTimeout(r, 0));
    return 0;
  };
  warmUpBuffer ??= packBuffers([serialize(warm)]) + packArgs([]);
  return warmUpBuffer;
}

/** Options of {@linkcode spawnWorker}. */
export interface SpawnWorkerOptions {
  /** The worker's number in its pool (names its log). */
  n: number;
  /** `""` for a plain worker, else the container image it runs in. */
  kind: string;
  /** Command line that starts the worker; undefined when `refusal` says why there is none. */
  command: readonly string[] | undefined;
  /** Environment of the worker (the accelerator's variables are added). */
  env: Record<string, string>;
  /** The accelerator the worker is pinned to, if any. */
  accelerator: string | undefined;
  /** Directory of the `worker_<n>.log` files. */
  logDir: string;
  /** Whether the worker may have transparent huge pages (see `huge_pages.ts`). @default false */
  hugePages?: boolean;
  /** Why not to start after all (asked once the log is open), or undefined to start. */
  refusal(): string | undefined;
  /** Called with each result the worker sends. */
  onResult(w: WorkerProcess, r: ResultMessage): void;
  /** Called with each answer to a {@linkcode WorkerProcess.skip}. */
  onSkipped(w: WorkerProcess, taskId: string, skipped: boolean): void;
}

/**
 * Starts one worker subprocess; it is not ready before {@linkcode WorkerProcess.started}.
 * Throws, with nothing left running, when `refusal` answers or the command cannot be spawned.
 */
export async function spawnWorker(options: SpawnWorkerOptions): Promise<WorkerProcess> {
  const { n, accelerator } = options;
  const env = { ...options.env };
  if (accelerator !== undefined) {
    env["CUDA_VISIBLE_DEVICES"] = accelerator;
    env["ROCR_VISIBLE_DEVICES"] = accelerator;
    env["SYCL_DEVICE_FILTER"] = `*:*:${accelerator}`;
  }
  const logPath = join(options.logDir, `worker_${n}.log`);
  const logFile = await Deno.open(logPath, { create: true, append: true });
  const refusal = options.refusal();
  if (refusal !== undefined || !options.command) {
    logFile.close();
    throw new Error(refusal ?? `Worker ${n} has no command line`);
  }
  const [cmd, ...args] = options.command;
  // A plain worker with every permission talks over a Unix socket: its reads wait in the event
  // loop, where a read of stdin (a blocking file to Deno) takes a thread of the pool per task.
  const socket = options.kind === "" && options.command.includes("--allow-all")
    ? await listenForWorker()
    : undefined;
  if (socket) {
    env[WORKER_SOCKET_ENV] = socket.path;
    // For the worker alone (it removes them as it starts; a sandboxed worker could not):
    // glibc gives each thread that allocates (V8's, the runtime's) an arena of its own, up to
    // 8 a core, where one task at a time needs two; and a worker never checks for a newer Deno.
    const own = { MALLOC_ARENA_MAX: "2", DENO_NO_UPDATE_CHECK: "1" };
    const set = Object.keys(own).filter((k) => env[k] === undefined);
    for (const k of set) env[k] = own[k as keyof typeof own];
    if (set.length > 0) env[WORKER_ONLY_ENV] = set.join(",");
  }
  let child: Deno.ChildProcess;
  try {
    const command = new Deno.Command(cmd!, {
      args,
      env,
      clearEnv: true,
      stdin: socket ? "null" : "piped",
      stdout: socket ? "null" : "piped",
      stderr: "piped",
    });
    child = options.hugePages ? command.spawn() : spawnWithoutHugePages(() => command.spawn());
  } catch (err) {
    logFile.close();
    socket?.close();
    throw err;
  }
  return new WorkerProcess(options, child, logFile, logPath, socket);
}

/** A listening socket for one worker, in a private directory removed once it is done with. */
interface WorkerSocket {
  path: string;
  listener: Deno.Listener<Deno.UnixConn>;
  close(): void;
}

/** The prefix of a worker socket's directory; the process that made it follows, then a dash. */
const SOCKET_DIR_PREFIX = "funcx-worker-";

/** Sweeps done or under way, by directory. */
const swept = new Map<string, Promise<void>>();

/**
 * Removes the socket directories that processes no longer running left behind (a manager killed
 * while a worker was starting leaves one): each name carries its maker's pid. Once a process for
 * each directory.
 */
export function sweepSocketDirs(tmp: string = tempRoot()): Promise<void> {
  let sweep = swept.get(tmp);
  if (sweep) return sweep;
  sweep = (async () => {
    const mine = new RegExp(`^${SOCKET_DIR_PREFIX}(\\d+)-`);
    try {
      for await (const e of Deno.readDir(tmp)) {
        const pid = e.isDirectory ? Number(mine.exec(e.name)?.[1]) : NaN;
        if (!(pid > 0) || pid === Deno.pid) continue;
        const running = await Deno.lstat(`/proc/${pid}`).then(() => true, () => false);
        if (running) continue;
        // Another user's directory stays: /tmp's sticky bit refuses its removal.
        await Deno.remove(join(tmp, e.name), { recursive: true }).catch(() => {});
      }
    } catch {
      // no /tmp to read: nothing to sweep
    }
  })();
  swept.set(tmp, sweep);
  return sweep;
}

/** Where `Deno.makeTempDir` puts directories: `$TMPDIR`, else /tmp. */
function tempRoot(): string {
  try {
    return Deno.env.get("TMPDIR") || "/tmp";
  } catch {
    return "/tmp"; // no env permission
  }
}

/** Its own socket for one worker, or undefined where the path would be too long for one. */
async function listenForWorker(): Promise<WorkerSocket | undefined> {
  void sweepSocketDirs();
  // mode 0700: only this user
  const dir = await Deno.makeTempDir({ prefix: `${SOCKET_DIR_PREFIX}${Deno.pid}-` });
  const path = join(dir, "s");
  if (new TextEncoder().encode(path).byteLength > 100) {
    await Deno.remove(dir).catch(() => {});
    return undefined;
  }
  const listener = Deno.listen({ transport: "unix", path });
  let closed = false;
  return {
    path,
    listener,
    close: () => {
      if (closed) return;
      closed = true;
      try {
        listener.close();
      } catch {
        // closed already
      }
      Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A live worker subprocess. */
export class WorkerProcess {
  readonly n: number;
  /** `""` for a plain worker, else the container image it runs in. */
  readonly kind: string;
  /** Asked to exit so a worker of this kind can take its place. */
  switchTo: string | undefined;
  readonly child: Deno.ChildProcess;
  readonly writer: FrameWriter<ToWorker>;
  readonly logPath: string;
  readonly accelerator: string | undefined;
  readonly ready: Promise<void>;
  readonly exited: Promise<Deno.CommandStatus>;
  /** The task it runs now. */
  current: PoolTask | undefined;
  /** When the current task started (`performance.now()`). */
  currentSince = 0;
  /** Milliseconds its last finished task ran, as the pool saw it. */
  lastRunMs: number | undefined;
  /** Its last task was short: it may be sent tasks ahead. */
  fit = false;
  /** Tasks sent ahead, to run after the current one, in order. */
  readonly ahead: PoolTask[] = [];
  /** The walltime timer of the current task. */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Takes the tasks sent ahead back if the current one runs long. */
  recallTimer: ReturnType<typeof setTimeout> | undefined;
  /** Why it was killed on purpose: its task fails with this rather than `WorkerLost`. */
  killReason: { name: EngineFailure; message: string } | undefined;
  /** Settles once the pool has dealt with its exit. */
  settled: Promise<void> = Promise.resolve();
  pid = 0;
  isReady = false;

  /** Wraps a spawned child: reads its frames and copies its stderr to its log. */
  constructor(
    options: Pick<SpawnWorkerOptions, "n" | "kind" | "accelerator" | "onResult" | "onSkipped">,
    child: Deno.ChildProcess,
    logFile: Deno.FsFile,
    logPath: string,
    socket?: WorkerSocket,
  ) {
    const n = options.n;
    this.n = n;
    this.kind = options.kind;
    this.child = child;
    this.logPath = logPath;
    this.accelerator = options.accelerator;
    let source: FrameSource;
    let sink: FrameSink;
    let conn: Promise<Deno.UnixConn | undefined> | undefined;
    if (!socket) {
      source = child.stdout;
      sink = child.stdin;
    } else {
      // Its one connection, unless it exits first; the socket goes once either happens.
      conn = Promise.race([
        socket.listener.accept().catch(() => undefined),
        child.status.then(() => undefined),
      ]).finally(() => socket.close());
      const c = conn;
      source = { read: async (p) => (await c)?.read(p) ?? null };
      sink = {
        write: async (p) => {
          const open = await c;
          if (!open) throw new Error(`Worker ${n} exited before it connected`);
          return await open.write(p);
        },
      };
    }
    const writer = new FrameWriter<ToWorker>(sink, () => this.kill());
    this.writer = writer;
    const logDone = child.stderr.pipeTo(logFile.writable).catch(() => {});
    const { promise: ready, resolve, reject } = Promise.withResolvers<void>();
    this.ready = ready;
    ready.catch(() => {});
    this.exited = (async () => {
      let greeted = false;
      try {
        for await (const msg of readFrames<FromWorker>(source)) {
          if (!this.isReady) {
            if (!greeted && msg.type === "hello" && msg.protocol === WORKER_PROTOCOL_VERSION) {
              greeted = true;
              this.pid = msg.pid;
              writer.send({ type: "task", task_id: WARM_UP_TASK_ID, buffer: warmUpTask() });
              continue;
            }
            if (greeted && msg.type === "result" && msg.result.task_id === WARM_UP_TASK_ID) {
              this.isReady = true;
              resolve();
              continue;
            }
            const step = greeted ? "warm-up" : "handshake";
            reject(new Error(`Worker ${n} failed its ${step} (${JSON.stringify(msg.type)})`));
            this.kill();
            break;
          } else if (msg.type === "result") {
            options.onResult(this, msg.result);
          } else if (msg.type === "skipped") {
            options.onSkipped(this, msg.task_id, msg.skipped);
          }
        }
      } catch (err) {
        reject(err);
        this.kill();
      }
      const status = await child.status;
      await writer.close();
      try {
        (await conn)?.close();
      } catch {
        // closed already
      }
      await logDone;
      const step = greeted ? "its warm-up task" : "its handshake";
      reject(new Error(`Worker ${n} exited with code ${status.code} before ${step}`));
      return status;
    })();
  }

  /**
   * Waits for the handshake, at most `timeoutS` seconds; a worker that fails it is killed and
   * the error quotes the end of its log.
   */
  async started(timeoutS: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.ready,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Worker ${this.n} did not start within ${timeoutS} s`)),
            timeoutS * 1000,
          );
        }),
      ]);
    } catch (err) {
      this.kill();
      await this.exited;
      const tail = await fileTail(this.logPath);
      throw new Error(`${(err as Error).message}${tail ? `; its log ends:\n${tail}` : ""}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends the worker its task. */
  run(task: PoolTask): void {
    this.began(task);
    this.writer.send({ type: "task", task_id: task.task_id, buffer: task.buffer });
  }

  /** Records that the worker started `task` (one it was sent earlier). */
  began(task: PoolTask): void {
    this.current = task;
    this.currentSince = performance.now();
  }

  /** Sends a task to run after the current one (and those sent ahead before it). */
  sendAhead(task: PoolTask): void {
    this.ahead.push(task);
    this.writer.send({ type: "task", task_id: task.task_id, buffer: task.buffer });
  }

  /** Asks the worker not to run a task sent ahead; it answers with `skipped`. */
  skip(taskId: string): void {
    this.writer.send({ type: "skip", task_id: taskId });
  }

  /** Asks the worker to exit once its task (if any) is done. */
  askToExit(): void {
    this.writer.send({ type: "shutdown" });
    void this.writer.close();
  }

  /** Its resident memory in MiB (undefined before the handshake or once it is gone). */
  residentMib(): number | undefined {
    return residentMib(this.pid);
  }

  /** Kills it on purpose: its task fails with `name` and `message` (the first reason wins). */
  killFor(name: EngineFailure, message: string): void {
    this.killReason ??= { name, message };
    this.kill();
  }

  /** Kills it (SIGKILL); nothing when it is gone already. */
  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /**
   * Why it died on its own (exit `status`) while running `taskId`, with the end of its log.
   * `waitOnSigterm`: a batch system ending the block (scancel, walltime) signals every process
   * of the job at once, the manager too, so a death by SIGTERM is reported a moment later, so
   * that the manager's own shutdown wins and the task counts as lost with its block
   * (ManagerLost, which max_retries_on_manager_lost covers).
   */
  async describeDeath(
    status: Deno.CommandStatus,
    taskId: string,
    options: { waitOnSigterm: boolean; memLimitMb: number | null },
  ): Promise<string> {
    const how = status.signal ? `signal ${status.signal}` : `exit code ${status.code}`;
    let message = `Worker ${this.n} (pid ${this.pid}) died with ${how} while running task ` +
      `"${taskId}"`;
    if (status.signal === "SIGTERM" && options.waitOnSigterm) {
      await new Promise((r) => setTimeout(r, SIGTERM_GRACE_MS));
    }
    const tail = await fileTail(this.logPath);
    if (/heap out of memory|Reached heap limit|out of memory/i.test(tail)) {
      message += `: it ran out of memory (mem_per_worker limit ${options.memLimitMb ?? "?"} MiB)`;
    } else if (tail) {
      message += `; its log ends:\n${tail.slice(-500)}`;
    }
    return message;
  }
}
