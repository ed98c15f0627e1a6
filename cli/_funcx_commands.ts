/**
 * The `funcx` commands: log in, run or submit tasks (a function from a file, or a command line),
 * then read a task group's status and results, cancel tasks, list endpoints and functions. Each
 * returns its exit code or throws {@linkcode FuncxCliError}; `--json` makes each print one JSON
 * document on stdout (the schemas are in the README).
 *
 * Everything goes through the SDK's public API (`mod.ts`).
 *
 * @module
 */
import { join } from "node:path";
import {
  type BatchResult,
  FuncxAPIError,
  type FuncXClient,
  LoginManager,
  type ShellResult,
  TaskExecutionFailed,
} from "../mod.ts";
import { loginClient, storedLogin } from "./_endpoint_login.ts";
import {
  countsLine,
  countTasks,
  EXIT,
  exitForCounts,
  FuncxCliError,
  ProgressBar,
  type TaskCounts,
  type TaskJson,
  taskJson,
  toJsonValue,
} from "./_funcx_output.ts";
import {
  loadFunction,
  parseJsonArgs,
  registeredFunction,
  shellFunction,
  type TaskFunction,
} from "./_funcx_function.ts";
import { table } from "./_table.ts";

/** Options every `funcx` command takes. */
export interface GlobalOptions {
  /** Where the login and the function cache are kept. */
  configDir: string;
  /** Print one JSON document on stdout. */
  json: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function print(value: unknown): void {
  console.log(JSON.stringify(value));
}

/** The service address: `FUNCX_SERVICE_ADDRESS`, else `FUNCX_SDK_ENVIRONMENT`'s, else local. */
function serviceAddress(): string {
  return new LoginManager().serviceAddress;
}

/** A logged-in client: client credentials, a stored login, or (on a terminal) the device flow. */
async function client(g: GlobalOptions): Promise<FuncXClient> {
  return (await loginClient(serviceAddress(), {
    configDir: g.configDir,
    interactive: Deno.stdin.isTerminal() && Deno.stderr.isTerminal(),
  })).client;
}

/** `login [--force]`. */
export async function loginCommand(g: GlobalOptions, force: boolean): Promise<number> {
  const address = serviceAddress();
  const env = Deno.env.toObject();
  let source = "stored_login";
  if (env["FUNCX_SDK_CLIENT_ID"] && env["FUNCX_SDK_CLIENT_SECRET"]) {
    source = "client_credentials";
  } else {
    const login = storedLogin(address, g.configDir);
    try {
      if (force || !(await login.accessToken())) {
        await login.login();
        source = "device_flow";
      }
    } finally {
      await login.close();
    }
  }
  const c = await client(g);
  const me = await c.whoami();
  if (g.json) {
    print({ service: c.serviceAddress, user: me.username, user_id: me.id, source });
  } else {
    console.log(
      `Logged in to ${c.serviceAddress} as ${me.username}` +
        (source === "client_credentials"
          ? " (client credentials from FUNCX_SDK_CLIENT_ID and FUNCX_SDK_CLIENT_SECRET)"
          : ` (login kept in ${join(g.configDir, "storage.db")})`),
    );
  }
  return EXIT.OK;
}

/** `logout`: revokes the stored login and forgets it. */
export async function logoutCommand(g: GlobalOptions): Promise<number> {
  const login = storedLogin(serviceAddress(), g.configDir);
  let revoked: boolean;
  try {
    revoked = await login.logout();
  } finally {
    await login.close();
  }
  if (g.json) print({ service: login.serviceAddress, logged_out: revoked });
  else {
    console.log(
      revoked
        ? `Logged out of ${login.serviceAddress}`
        : `No stored login for ${login.serviceAddress}`,
    );
  }
  return EXIT.OK;
}

/**
 * A task group's id: a UUID as given, or a name (`nightly-2026-01-31`) turned into the same UUID
 * every time for the same user, so a cron job needs no state to find its group again.
 */
export async function taskGroupId(c: FuncXClient, group: string): Promise<string> {
  if (UUID.test(group)) return group.toLowerCase();
  if (!/^[\w.:@+-]{1,200}$/.test(group)) {
    throw new FuncxCliError(
      EXIT.USAGE,
      "usage",
      `Invalid task group "${group}": use a UUID or a name of letters, digits and . _ : @ + -`,
    );
  }
  const me = await c.whoami();
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${me.id}\n${group}`)),
  );
  digest[6] = (digest[6]! & 0x0f) | 0x80; // version 8: custom
  digest[8] = (digest[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const hex = Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

/** What `run` and `submit` are given. */
export interface TaskRequest {
  endpoint: string;
  /** A command line (`--shell`). */
  shell?: string;
  /** `FILE.ts#name`, when not `--shell`. */
  function?: string;
  /** JSON arguments. */
  args: string[];
  /** One task per argument instead of one task with all of them. */
  map: boolean;
  /** The task group (a UUID or a name). @default a new one */
  group?: string;
}

async function taskFunction(req: TaskRequest): Promise<TaskFunction> {
  if (req.shell !== undefined && req.function !== undefined) {
    throw new FuncxCliError(
      EXIT.USAGE,
      "usage",
      `Give either --shell or a function, not both (got --shell and "${req.function}")`,
    );
  }
  if (req.shell !== undefined) return shellFunction(req.shell);
  if (req.function === undefined) {
    throw new FuncxCliError(
      EXIT.USAGE,
      "usage",
      "Nothing to run: give --shell 'CMD' or FILE.ts#name with its JSON arguments",
    );
  }
  return await loadFunction(req.function);
}

/** Submits the tasks of `req`; returns the group and the task ids, in order. */
async function submitTasks(
  c: FuncXClient,
  g: GlobalOptions,
  req: TaskRequest,
): Promise<{ taskGroupId: string; functionId: string; taskIds: string[] }> {
  const args = parseJsonArgs(req.args);
  if (req.map && args.length === 0) {
    throw new FuncxCliError(EXIT.USAGE, "usage", "--map needs at least one argument");
  }
  const fn = await taskFunction(req);
  const group = req.group === undefined ? crypto.randomUUID() : await taskGroupId(c, req.group);
  const cache = join(g.configDir, "functions.json");
  await Deno.mkdir(g.configDir, { recursive: true, mode: 0o700 });
  const send = async (functionId: string) => {
    const batch = c.createBatch({ taskGroupId: group });
    for (const a of req.map ? args.map((x) => [x]) : [args]) batch.add(functionId, req.endpoint, a);
    return await c.batchRun(batch);
  };
  let functionId = await registeredFunction(c, fn, cache);
  let taskIds: string[];
  try {
    taskIds = await send(functionId);
  } catch (err) {
    // A cached id the service no longer knows (a reset service): register it again.
    if (!(err instanceof FuncxAPIError) || err.codeName !== "function_not_found") throw err;
    functionId = await registeredFunction(c, fn, cache, true);
    taskIds = await send(functionId);
  }
  return { taskGroupId: group, functionId, taskIds };
}

/** `submit`: prints the task ids and returns at once. */
export async function submitCommand(g: GlobalOptions, req: TaskRequest): Promise<number> {
  const c = await client(g);
  const s = await submitTasks(c, g, req);
  if (g.json) {
    print({
      task_group_id: s.taskGroupId,
      endpoint_id: req.endpoint,
      function_id: s.functionId,
      task_ids: s.taskIds,
    });
  } else {
    for (const id of s.taskIds) console.log(id);
    console.error(`Task group: ${s.taskGroupId}`);
  }
  return EXIT.OK;
}

/** Options of {@linkcode collect}. */
interface CollectOptions {
  /** Wait until every task has finished. */
  wait: boolean;
  /** Stop waiting after this many seconds. */
  timeoutS?: number;
  /** Called with the counts after each poll. */
  onProgress?: (c: TaskCounts) => void;
}

/** The outcomes of `taskIds`, polled until all have finished (with `wait`). */
async function collect(
  c: FuncXClient,
  taskIds: readonly string[],
  options: CollectOptions,
): Promise<Map<string, BatchResult>> {
  const all = new Map<string, BatchResult>();
  const deadline = options.timeoutS === undefined ? Infinity : Date.now() + options.timeoutS * 1000;
  let pending = [...taskIds];
  let delay = 100;
  for (;;) {
    const got = await c.getBatchResult(pending);
    for (const [id, r] of got) all.set(id, r);
    pending = pending.filter((id) => all.get(id)?.pending ?? true);
    options.onProgress?.(countTasks(taskIds.map((id) => all.get(id)!)));
    if (!options.wait || pending.length === 0 || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, deadline - Date.now()))));
    delay = Math.min(delay * 1.5, 2000);
  }
  return new Map(taskIds.map((id) => [id, all.get(id)!]));
}

/** When each finished task of `results` finished (seconds since the epoch). */
async function completionTimes(
  c: FuncXClient,
  results: readonly BatchResult[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const todo = results.filter((r) => !r.pending);
  // A failure carries its time; a success's is read from the task (8 requests at a time).
  for (const r of todo) {
    if (r.error instanceof TaskExecutionFailed && r.error.completionT !== undefined) {
      out.set(r.taskId, r.error.completionT);
    }
  }
  const ask = todo.filter((r) => !out.has(r.taskId));
  for (let i = 0; i < ask.length; i += 8) {
    await Promise.all(
      ask.slice(i, i + 8).map(async (r) => {
        const t = await c.getTask(r.taskId);
        if (t.completion_t !== undefined) out.set(r.taskId, t.completion_t);
      }),
    );
  }
  return out;
}

/** Parses `--since`: ISO 8601 or seconds since the epoch; returns seconds since the epoch. */
export function parseSince(text: string): number {
  const n = Number(text);
  if (text.trim() !== "" && Number.isFinite(n)) return n;
  const t = Date.parse(text);
  if (Number.isNaN(t)) {
    throw new FuncxCliError(
      EXIT.USAGE,
      "usage",
      `Invalid --since "${text}": give a time such as 2026-01-31T06:00:00Z or seconds since 1970`,
    );
  }
  return t / 1000;
}

/** Prints a group's results (text or JSON) and returns the exit code of their counts. */
async function report(
  c: FuncXClient,
  g: GlobalOptions,
  group: string,
  results: BatchResult[],
  since: number | undefined,
): Promise<number> {
  const counts = countTasks(results);
  const times = since === undefined ? undefined : await completionTimes(c, results);
  const shown = results.filter((r) =>
    !r.pending && (times === undefined || (times.get(r.taskId) ?? Infinity) >= since!)
  );
  if (g.json) {
    const tasks: TaskJson[] = shown.map((r) => taskJson(r, times?.get(r.taskId)));
    print({
      task_group_id: group,
      counts,
      complete: counts.running + counts.waiting === 0,
      results: tasks,
    });
  } else {
    for (const r of shown) printResult(r, shown.length === 1);
    console.error(countsLine(counts));
  }
  return exitForCounts(counts);
}

/** One finished task for people: the value alone for a single task, else a line per task. */
function printResult(r: BatchResult, alone: boolean): void {
  if (r.error) {
    const e = r.error instanceof TaskExecutionFailed
      ? `${r.error.remote.name}: ${r.error.remote.message}`
      : r.error.message;
    console.error(alone ? e : `${r.taskId}  failed  ${e}`);
    if (alone && r.error instanceof TaskExecutionFailed && r.error.remote.stack) {
      console.error(r.error.remote.stack.split("\n").slice(1).join("\n"));
    }
    return;
  }
  const v = r.result;
  const shell = v && typeof v === "object" && "returncode" in v && "stdout" in v
    ? v as ShellResult
    : undefined;
  if (alone && shell) {
    Deno.stdout.writeSync(new TextEncoder().encode(shell.stdout));
    if (shell.stderr) Deno.stderr.writeSync(new TextEncoder().encode(shell.stderr));
    return;
  }
  const text = typeof v === "string" && alone ? v : JSON.stringify(toJsonValue(v));
  console.log(alone ? text : `${r.taskId}  success  ${text}`);
}

/** `run`: submits, waits and prints the results. */
export async function runCommand(
  g: GlobalOptions,
  req: TaskRequest,
  timeoutS?: number,
): Promise<number> {
  const c = await client(g);
  const s = await submitTasks(c, g, req);
  const bar = s.taskIds.length > 1 && !g.json ? new ProgressBar() : undefined;
  const got = await collect(c, s.taskIds, {
    wait: true,
    ...(timeoutS === undefined ? {} : { timeoutS }),
    ...(bar ? { onProgress: (n: TaskCounts) => bar.update(n) } : {}),
  });
  bar?.done();
  return await report(c, g, s.taskGroupId, [...got.values()], undefined);
}

/** `results GROUP [--wait] [--since T] [--timeout S]`. */
export async function resultsCommand(
  g: GlobalOptions,
  group: string,
  o: { wait: boolean; since?: string; timeoutS?: number },
): Promise<number> {
  const since = o.since === undefined ? undefined : parseSince(o.since);
  const c = await client(g);
  const id = await taskGroupId(c, group);
  const ids = await c.getTaskGroup(id);
  const bar = o.wait ? new ProgressBar() : undefined;
  const got = await collect(c, ids, {
    wait: o.wait,
    ...(o.timeoutS === undefined ? {} : { timeoutS: o.timeoutS }),
    ...(bar ? { onProgress: (n: TaskCounts) => bar.update(n) } : {}),
  });
  bar?.done();
  return await report(c, g, id, [...got.values()], since);
}

/** `status GROUP`: each task's state and the counts. */
export async function statusCommand(g: GlobalOptions, group: string): Promise<number> {
  const c = await client(g);
  const id = await taskGroupId(c, group);
  const ids = await c.getTaskGroup(id);
  const got = [...(await collect(c, ids, { wait: false })).values()];
  const counts = countTasks(got);
  const tasks = got.map((r) => ({
    task_id: r.taskId,
    status: r.pending ? r.status : (r.error ? "failed" : "success"),
  }));
  if (g.json) print({ task_group_id: id, counts, tasks });
  else {
    console.log(`Task group ${id}: ${countsLine(counts)}`);
    if (tasks.length) {
      console.log(table(["Task ID", "Status"], tasks.map((t) => [t.task_id, t.status])));
    }
  }
  return exitForCounts(counts);
}

/** `cancel ID...`. */
export async function cancelCommand(g: GlobalOptions, ids: string[]): Promise<number> {
  const c = await client(g);
  const out: Array<{ task_id: string; cancelled: boolean; error?: string }> = [];
  for (const id of ids) {
    try {
      out.push({ task_id: id, cancelled: await c.cancelTask(id) });
    } catch (err) {
      if (!(err instanceof FuncxAPIError) || err.httpStatus !== 404) throw err;
      out.push({ task_id: id, cancelled: false, error: err.codeName });
    }
  }
  if (g.json) print({ tasks: out });
  else {
    for (const t of out) {
      console.log(
        `${t.task_id}  ${t.cancelled ? "cancelled" : t.error ? "not found" : "already finished"}`,
      );
    }
  }
  return out.some((t) => t.error) ? EXIT.DATAERR : EXIT.OK;
}

/** `endpoints`: the user's endpoints and whether they are online. */
export async function endpointsCommand(g: GlobalOptions): Promise<number> {
  const eps = await (await client(g)).getEndpoints();
  const rows = eps.map((e) => ({ endpoint_id: e.endpoint_id, name: e.name, status: e.status }));
  if (g.json) print({ endpoints: rows });
  else if (rows.length === 0) console.log("No endpoints (start one with: funcx-endpoint start)");
  else {
    console.log(
      table(["Endpoint ID", "Status", "Name"], rows.map((e) => [e.endpoint_id, e.status, e.name])),
    );
  }
  return EXIT.OK;
}

/** `functions`: the user's registered functions, newest first. */
export async function functionsCommand(g: GlobalOptions, limit: number): Promise<number> {
  const fns = await (await client(g)).getFunctions({ limit });
  const rows = fns.map((f) => ({
    function_id: f.function_uuid,
    name: f.function_name,
    description: f.description,
    public: f.public,
    created_at: new Date(f.created_at * 1000).toISOString(),
  }));
  if (g.json) print({ functions: rows });
  else if (rows.length === 0) console.log("No functions registered");
  else {
    console.log(
      table(
        ["Function ID", "Name", "Registered"],
        rows.map((f) => [f.function_id, f.name, f.created_at]),
      ),
    );
  }
  return EXIT.OK;
}
