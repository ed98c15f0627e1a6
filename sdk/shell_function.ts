/**
 * `ShellFunction`: a command line run on the endpoint instead of a JavaScript function. It
 * travels as an ordinary registered function named `__funcx_shell__` whose body returns the
 * {@linkcode ShellSpec}; the endpoint's worker recognises the name, fills the command's `{name}`
 * and `{0}` placeholders from the task's arguments, runs it and returns a
 * {@linkcode ShellResult}. A non-zero exit is a result, not an error, unless asked.
 *
 * @module
 */

/**
 * The name that marks a ShellFunction.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SHELL_FUNCTION_NAME, shellFunctionSource } from "./shell_function.ts";
 * assert.ok(shellFunctionSource({ cmd: "true" }).includes(SHELL_FUNCTION_NAME));
 * ```
 */
export const SHELL_FUNCTION_NAME = "__funcx_shell__";

/**
 * What a ShellFunction runs.
 *
 * @example A command with a time limit that fails on a non-zero exit
 * ```ts
 * import assert from "node:assert/strict";
 * import { ShellFunction, type ShellSpec } from "@funcx/sdk";
 * const spec: ShellSpec = { cmd: "sbatch --wait {script}", timeout_s: 3600, fail_on_nonzero: true };
 * assert.equal(new ShellFunction(spec.cmd, spec).spec.timeout_s, 3600);
 * ```
 */
export interface ShellSpec {
  /** Command line; `{name}` and `{0}` are replaced from the arguments; `{{` and `}}` are braces. */
  cmd: string;
  /** Seconds before the command is killed (return code 124). @default no limit */
  timeout_s?: number;
  /** Alias of `timeout_s`. */
  walltime_s?: number;
  /** Fail the task when the command exits non-zero. @default false */
  fail_on_nonzero?: boolean;
  /** Keep only the last N lines of stdout and stderr. @default 1000 */
  snippet_lines?: number;
}

/**
 * What a ShellFunction returns.
 *
 * @example Read a command's outcome
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ShellResult } from "@funcx/sdk";
 * const ok = (r: ShellResult) => r.returncode === 0;
 * assert.ok(ok({ returncode: 0, stdout: "hello\n", stderr: "", cmd: "echo hello" }));
 * ```
 */
export interface ShellResult {
  /** Exit code (124 when it timed out, 128+N when killed by signal N). */
  returncode: number;
  /** Last lines of standard output. */
  stdout: string;
  /** Last lines of standard error. */
  stderr: string;
  /** The command line that ran, placeholders filled. */
  cmd: string;
}

/**
 * Source text of a ShellFunction for `spec`, to register as a function.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shellFunctionSource } from "./shell_function.ts";
 * const source = shellFunctionSource({ cmd: "echo {x}" });
 * assert.ok(source.startsWith("function __funcx_shell__"));
 * ```
 */
export function shellFunctionSource(spec: ShellSpec): string {
  if (typeof spec.cmd !== "string" || spec.cmd === "") {
    throw new TypeError("Cannot make a ShellFunction: cmd must be a non-empty string");
  }
  return `function ${SHELL_FUNCTION_NAME}() { return ${JSON.stringify(spec)}; }`;
}

/**
 * A command line to run on an endpoint; register it with `FuncXClient.registerShellFunction`.
 *
 * @example A command line with placeholders
 * ```ts
 * import assert from "node:assert/strict";
 * import { ShellFunction } from "@funcx/sdk";
 * const wc = new ShellFunction("wc -l {path}", { snippet_lines: 10 });
 * assert.equal(wc.spec.cmd, "wc -l {path}");
 * assert.throws(() => new ShellFunction(""), TypeError);
 * ```
 */
export class ShellFunction {
  /** What it runs. */
  readonly spec: ShellSpec;
  /** The name it is registered under, which tells the endpoint how to run it. */
  readonly functionName: string = SHELL_FUNCTION_NAME;

  /**
   * Builds a shell function from a command line and options.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ShellFunction } from "@funcx/sdk";
   * const sf = new ShellFunction("wc -l {path}", { timeout_s: 60 });
   * assert.ok(sf.spec.cmd === "wc -l {path}");
   * ```
   */
  constructor(cmd: string, options: Omit<ShellSpec, "cmd"> = {}) {
    this.spec = { cmd, ...options };
    shellFunctionSource(this.spec);
  }

  /** The source text that is registered. */
  source(): string {
    return shellFunctionSource(this.spec);
  }
}
