/**
 * A worker subprocess: it says hello, then runs the tasks its manager sends one at a time and
 * answers each with a result frame, over the Unix socket named by `FUNCX_WORKER_SOCKET` when the
 * manager gave one, else over stdin/stdout. User code's console output goes to stderr (the
 * manager keeps it in the worker's log file) so it can never corrupt the frame stream. When the
 * input ends without a `shutdown` the manager is gone, and the worker exits at once rather than
 * live on as an orphan.
 *
 * @module
 */
import {
  ActorName,
  errorToInfo,
  nowNs,
  packArgs,
  packBuffers,
  type ResultMessage,
  serialize,
  serializeData,
  TaskState,
  unpackTask,
} from "../../sdk/protocol/mod.ts";
import {
  encodeFrame,
  type FrameSource,
  FrameWriter,
  type FromWorker,
  memorySource,
  readFrames,
  type ToWorker,
  WORKER_ONLY_ENV,
  WORKER_PROTOCOL_VERSION,
  WORKER_SOCKET_ENV,
} from "./frames.ts";
import { IdleReclaimer } from "./idle_reclaimer.ts";
import { webWorkerPermissions, WORKER_PERMISSIONS_ENV, type WorkerPermissions } from "./command.ts";
import { runShell, SHELL_FUNCTION_NAME, type ShellSpec } from "./shell.ts";

/** Largest serialized result, in characters. */
export const RESULT_SIZE_LIMIT = 10 * 1024 * 1024;

type AnyFn = (...args: unknown[]) => unknown;
const compiled = new Map<string, AnyFn>();

/** Turns function source text into a callable (cached by source). */
export function compileFunction(name: string, source: string): AnyFn {
  let fn = compiled.get(source);
  if (fn) return fn;
  // The sourceURL names the function in remote stack traces instead of this file's eval site.
  const url = `\n//# sourceURL=funcx-function:${encodeURIComponent(name || "anonymous")}`;
  let value: unknown;
  try {
    value = (0, eval)(`(${source}\n)${url}`);
  } catch (first) {
    // Method shorthand (`name(a) { ... }`) is not an expression on its own.
    try {
      value = (0, eval)(`({${source}\n})${url}`)[name];
    } catch {
      throw first;
    }
  }
  if (typeof value !== "function") {
    throw new TypeError(`Function source of "${name}" does not evaluate to a function`);
  }
  fn = value as AnyFn;
  if (compiled.size > 1024) compiled.clear();
  compiled.set(source, fn);
  return fn;
}

// The endpoint's and the SDK's own files: their frames in a task's stack are the worker's
// machinery, not the user's code (the user's function is named `funcx-function:<name>`).
const OWN_FILES = [new URL("../", import.meta.url), new URL("../../sdk/", import.meta.url)]
  .flatMap((u) => [u.href, decodeURIComponent(u.pathname)]);

/**
 * A remote error's stack with only the user's frames: frames in the endpoint's and the SDK's own
 * files and Deno's internals (`ext:`) are dropped; message lines and `Caused by:` sections stay.
 */
export function userFrames(stack: string): string {
  return stack.split("\n").filter((line) =>
    !/^\s+at /.test(line) ||
    !(line.includes("(ext:") || line.includes(" ext:") || OWN_FILES.some((f) => line.includes(f)))
  ).join("\n");
}

/** The wire form of a task's error, its stack trimmed to the user's frames. */
function taskError(err: unknown): string {
  const info = errorToInfo(err);
  return serialize({ ...info, stack: userFrames(info.stack) });
}

/** Runs one task buffer and builds its result message. */
export async function runTask(taskId: string, buffer: string): Promise<ResultMessage> {
  const statuses = [];
  let data: string;
  let errorDetails: ResultMessage["error_details"] = null;
  const start = nowNs();
  statuses.push({ timestamp: start, state: TaskState.EXECUTION_START, actor: ActorName.WORKER });
  try {
    const task = unpackTask(buffer);
    const fn = compileFunction(task.fn.name, task.fn.source);
    let value: unknown;
    if (task.fn.name === SHELL_FUNCTION_NAME) {
      value = await runShell(fn() as ShellSpec, task.args, task.kwargs);
    } else {
      const args = Object.keys(task.kwargs).length > 0 ? [...task.args, task.kwargs] : task.args;
      value = await fn(...args);
    }
    // Data only: a function returned by the task fails it, rather than passing for a result.
    data = serializeData(value);
    if (data.length > RESULT_SIZE_LIMIT) {
      const err = new Error(
        `Task result of ${data.length}B exceeded current limit of ${RESULT_SIZE_LIMIT}B`,
      );
      err.name = "MaxResultSizeExceeded";
      data = taskError(err);
      errorDetails = {
        code: "MaxResultSizeExceeded",
        user_message: `remote error: ${err.message}`,
      };
    }
  } catch (err) {
    data = taskError(err);
    errorDetails = {
      code: "RemoteExecutionError",
      user_message: "An error occurred during the execution of this task",
    };
  }
  statuses.push({ timestamp: nowNs(), state: TaskState.EXECUTION_END, actor: ActorName.WORKER });
  return { task_id: taskId, data, error_details: errorDetails, task_statuses: statuses };
}

/** Sends user code's console output to stderr, keeping stdout for frames. */
export function consoleToStderr(): void {
  for (const m of ["log", "info", "debug", "dir", "table", "trace"] as const) {
    (console as unknown as Record<string, unknown>)[m] = console.error;
  }
}

/** Runs one task, in this isolate or in the sandbox. */
type Runner = (taskId: string, buffer: string) => Promise<ResultMessage>;

/**
 * Runs two tiny tasks through the whole task path before the worker says hello, a plain one and
 * an async one that awaits a timer: the first task's one-off cost (compiling the decoder,
 * serializer and runner, and the async function and timer paths: a few ms of CPU, which
 * doubled the first task's CPU when only the plain one was warmed) is paid while the node
 * starts, not by the first real task, when hundreds of workers would pay it at the same moment.
 */
async function warmUp(run: Runner): Promise<void> {
  const warm = (a: number, b: { c: string }) => ({ a, b, d: new Date(0) });
  const wait = async (ms: number) => {
    await new Promise((r) => setTimeout(r, ms));
    return ms;
  };
  const frames = [
    encodeFrame(
      {
        type: "task",
        task_id: "warm-up",
        buffer: packBuffers([serialize(warm)]) + packArgs([1, { c: "x" }]),
      } satisfies ToWorker,
    ),
    encodeFrame(
      {
        type: "task",
        task_id: "warm-up-async",
        buffer: packBuffers([serialize(wait)]) + packArgs([0]),
      } satisfies ToWorker,
    ),
  ];
  // The frame decoder and encoder too, through the same functions a real task takes, from a
  // source read as the socket is.
  for await (const task of readFrames<ToWorker>(memorySource(frames))) {
    if (task.type !== "task") continue;
    const result = await run(task.task_id, task.buffer);
    encodeFrame({ type: "result", result } satisfies FromWorker);
  }
}

/**
 * A young-generation collection, where `gc` is exposed (`--expose-gc`, as the manager starts
 * `deno run` workers). Start-up and the warm-up leave the young generation part full, and equally
 * full in every worker, so that every worker of a wave would otherwise collect at the same task (a
 * few tasks in): measured with 256 workers on 2 cores, a stall of 100–300 ms across the node at
 * that task. Emptied now, the first collection waits for about a MiB of the tasks' own garbage.
 */
function emptyYoungGeneration(): void {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc === "function") gc({ type: "minor", execution: "sync", flavor: "regular" });
}

/** The permission set a compiled binary's manager handed this worker, if any. */
function sandboxPermissions(): WorkerPermissions | undefined {
  let raw: string | undefined;
  try {
    raw = Deno.env.get(WORKER_PERMISSIONS_ENV);
  } catch {
    return undefined; // started with narrowed permissions already (`deno run`)
  }
  return raw ? JSON.parse(raw) as WorkerPermissions : undefined;
}

/**
 * Runs tasks in a Web Worker limited to `permissions`: how a compiled binary, which cannot start a
 * process with fewer permissions than it was compiled with, keeps a task inside the endpoint's
 * sandbox. An error that escapes a task ends this process, as it would a `deno run` worker.
 */
function sandboxRunner(permissions: WorkerPermissions): Runner {
  const worker = new Worker(new URL("./sandbox_worker.ts", import.meta.url), {
    type: "module",
    name: "funcx-sandbox",
    deno: { permissions: webWorkerPermissions(permissions) },
  } as WorkerOptions);
  const waiting = new Map<string, (r: ResultMessage) => void>();
  worker.onmessage = (e: MessageEvent<ResultMessage>) => {
    const done = waiting.get(e.data.task_id);
    waiting.delete(e.data.task_id);
    done?.(e.data);
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    console.error(`Uncaught error in the task sandbox: ${e.message}`);
    Deno.exit(1);
  };
  return (taskId, buffer) =>
    new Promise((resolve) => {
      waiting.set(taskId, resolve);
      worker.postMessage({ task_id: taskId, buffer });
    });
}

/** Removes what the manager set for this process alone ({@linkcode WORKER_ONLY_ENV}). */
function dropWorkerOnlyEnv(): void {
  try {
    const names = Deno.env.get(WORKER_ONLY_ENV);
    if (!names) return;
    for (const name of names.split(",")) Deno.env.delete(name);
    Deno.env.delete(WORKER_ONLY_ENV);
  } catch {
    // no env access: started without such variables
  }
}

/** A worker process's main loop (the `__worker` entry of the compiled binary runs it too). */
export async function workerMain(): Promise<void> {
  dropWorkerOnlyEnv();
  consoleToStderr();
  const permissions = sandboxPermissions();
  const run: Runner = permissions ? sandboxRunner(permissions) : runTask;
  await warmUp(run);
  emptyYoungGeneration();
  const manager = await managerChannel();
  manager.send({ type: "hello", protocol: WORKER_PROTOCOL_VERSION, pid: Deno.pid });
  // Tasks run one at a time, but stdin is read all along so that its end is seen mid-task.
  let chain: Promise<void> = Promise.resolve();
  let shutdown = false;
  // A fresh worker has little to give back (a first full collection would only page in more of
  // the executable), so only growth from tasks counts. Never while a task runs (a long task is
  // not idleness), and not all at once: hundreds of workers finishing a wave together would
  // otherwise reclaim together and starve everything else on the node.
  let running = 0;
  const reclaimer = new IdleReclaimer({
    quietMs: 1000,
    jitterMs: 1000,
    busy: () => running > 0,
  });
  // Tasks received and not started: the manager may send a few ahead, and take them back.
  const waiting = new Set<string>();
  for await (const msg of readFrames<ToWorker>(manager.source)) {
    if (msg.type === "shutdown") {
      shutdown = true;
      break;
    }
    if (msg.type === "skip") {
      const skipped = waiting.delete(msg.task_id);
      manager.send({ type: "skipped", task_id: msg.task_id, skipped });
      continue;
    }
    reclaimer.touch();
    running++;
    waiting.add(msg.task_id);
    chain = chain.then(async () => {
      if (waiting.delete(msg.task_id)) {
        const result = await run(msg.task_id, msg.buffer);
        manager.send({ type: "result", result });
      }
      running--;
      reclaimer.touch();
    });
  }
  reclaimer.close();
  if (shutdown) {
    await chain;
    await manager.drain();
  }
}

/** How a worker hears from and answers its manager. */
interface ManagerChannel {
  source: FrameSource;
  send(message: FromWorker): void;
  /** Waits until what was sent is written. */
  drain(): Promise<void>;
}

/**
 * The Unix socket the manager listens on for this worker (`FUNCX_WORKER_SOCKET`), else
 * stdin/stdout. The socket is read in the event loop; stdin is a blocking file to Deno, whose
 * every read takes a trip through a thread pool.
 */
async function managerChannel(): Promise<ManagerChannel> {
  let path: string | undefined;
  try {
    path = Deno.env.get(WORKER_SOCKET_ENV);
  } catch {
    path = undefined; // no env access: started without a socket
  }
  if (!path) return { source: Deno.stdin, send: writeFrame, drain: () => Promise.resolve() };
  const conn = await Deno.connect({ transport: "unix", path });
  // A write that fails means the manager is gone: exit rather than live on as an orphan.
  const writer = new FrameWriter<FromWorker>(conn, () => Deno.exit(1));
  return { source: conn, send: (m) => writer.send(m), drain: () => writer.drain() };
}

/**
 * Writes a frame to stdout synchronously. An async write to stdio goes through a thread pool
 * (Deno's stdio is a blocking file), which costs ~20 µs of CPU per task against ~1 µs for a plain
 * `write(2)`; blocking is harmless here as the manager keeps reading.
 */
function writeFrame(message: FromWorker): void {
  const bytes = encodeFrame(message);
  let at = 0;
  while (at < bytes.byteLength) at += Deno.stdout.writeSync(bytes.subarray(at));
}

if (import.meta.main) {
  await workerMain();
  Deno.exit(0);
}
