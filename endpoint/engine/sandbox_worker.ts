/**
 * The Web Worker in which a compiled binary's worker runs its tasks when the endpoint config
 * narrows the permissions (see `worker_main.ts`): Deno gives it only the configured permission
 * set, so a task here can do exactly what it could in a `deno run` worker started with those
 * flags. It takes `{task_id, buffer}` messages and answers each with the task's result message.
 *
 * @module
 */
import { consoleToStderr, runTask } from "./worker_main.ts";

interface WorkerScope {
  onmessage: ((e: MessageEvent<{ task_id: string; buffer: string }>) => void) | null;
  postMessage(message: unknown): void;
}

const scope = globalThis as unknown as WorkerScope;
consoleToStderr();
scope.onmessage = async (e) => {
  scope.postMessage(await runTask(e.data.task_id, e.data.buffer));
};
