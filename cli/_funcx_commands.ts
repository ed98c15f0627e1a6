/**
 * The `funcx` commands: log in, run or submit tasks (a function from a file, or a command line),
 * then read a task group's status and results, cancel tasks, list endpoints and functions. Each
 * returns its exit code or throws `FuncxCliError` (`_funcx_output.ts`); `--json` makes each print
 * one JSON document on stdout (the schemas are in the README). This file only re-exports them
 * from one file per group: `_funcx_submit.ts`, `_funcx_results.ts`, `_funcx_account.ts`, over
 * `_funcx_session.ts`.
 *
 * Everything goes through the SDK's public API (`mod.ts`).
 *
 * @module
 */
export {
  endpointsCommand,
  functionsCommand,
  loginCommand,
  logoutCommand,
} from "./_funcx_account.ts";
export { cancelCommand, parseSince, resultsCommand, statusCommand } from "./_funcx_results.ts";
export { type GlobalOptions, taskGroupId } from "./_funcx_session.ts";
export { runCommand, submitCommand, type TaskRequest } from "./_funcx_submit.ts";
