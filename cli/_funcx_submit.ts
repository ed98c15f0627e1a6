/**
 * The `funcx` commands that start tasks: `submit` (print the task ids and return) and `run`
 * (wait and print the results), of a function from a file or a command line.
 *
 * @module
 */
import { join } from "node:path";
import { FuncxAPIError, type FuncXClient } from "../mod.ts";
import { EXIT, FuncxCliError, ProgressBar, type TaskCounts } from "./_funcx_output.ts";
import {
  loadFunction,
  parseJsonArgs,
  registeredFunction,
  shellFunction,
  type TaskFunction,
} from "./_funcx_function.ts";
import { collect, report } from "./_funcx_results.ts";
import { client, type GlobalOptions, print, taskGroupId } from "./_funcx_session.ts";

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
