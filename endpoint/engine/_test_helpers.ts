/**
 * Helpers for the engine tests (tests/engine_*_test.ts): task buffers from functions, result decoding, and counts of this
 * process's descendants and open file descriptors (from /proc).
 *
 * @module
 */
import {
  deserialize,
  packArgs,
  packBuffers,
  type RemoteErrorInfo,
  type ResultMessage,
  serialize,
} from "../../sdk/protocol/mod.ts";

/**
 * The two ways a local block runs its manager (`engine.local_manager`): the engine and chaos tests
 * run the failure cases against both.
 */
export const LOCAL_MANAGER_MODES = ["in_process", "process"] as const;

/** A task buffer for `fn(...args)` (kwargs last when given). */
export function taskBuffer(
  fn: (...a: never[]) => unknown,
  args: unknown[] = [],
  kwargs?: Record<string, unknown>,
): string {
  return packBuffers([serialize(fn)]) + packArgs(args, kwargs);
}

/** A task buffer for a function given as its name and source text. */
export function sourceTaskBuffer(
  name: string,
  source: string,
  args: unknown[] = [],
  kwargs?: Record<string, unknown>,
): string {
  return packBuffers([`st\n${name}:${source}`]) + packArgs(args, kwargs);
}

/** The value of a successful result; throws with the remote error otherwise. */
export function valueOf(r: ResultMessage): unknown {
  if (r.error_details) {
    const e = deserialize(r.data) as RemoteErrorInfo;
    throw new Error(`Task failed: ${e.name}: ${e.message}`);
  }
  return deserialize(r.data);
}

/** The remote error of a failed result. */
export function errorOf(r: ResultMessage): RemoteErrorInfo & { code: string } {
  if (!r.error_details) throw new Error(`Task "${r.task_id}" did not fail`);
  return { ...(deserialize(r.data) as RemoteErrorInfo), code: r.error_details.code };
}

/** Pids of all descendants of this process. */
export function descendants(root = Deno.pid): number[] {
  const children = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(e.name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const c of children.get(stack.pop()!) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

/** Number of open file descriptors of this process. */
export function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** Waits until `check` is true (polling), or throws after `timeoutMs`. */
export async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `engine.status()` of a local engine whose blocks are all up and idle. */
export function idleLocalStatus(managers: number, workersEach: number): Record<string, unknown> {
  return {
    managers,
    total_workers: managers * workersEach,
    idle_workers: managers * workersEach,
    pending_tasks: 0,
    blocks: { pending: 0, running: managers, completed: 0, failed: 0 },
    provider: "local",
    provider_error: null,
  };
}
