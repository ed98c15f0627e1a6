/**
 * ShellFunction, the runtime side: a function named `__funcx_shell__` whose body returns a
 * {@linkcode ShellSpec} is not called as user code; the worker fills the command's `{name}` and
 * `{0}` placeholders from the task's keyword and positional arguments, runs it with `/bin/sh -c`
 * (in its own session, through `setsid`, so a timeout kills the whole command tree) and returns a
 * `ShellResult`. The SDK (`sdk/shell_function.ts`) defines the contract and registers such a
 * function, so the wire protocol needs nothing new.
 *
 * @module
 */

const SETSID = "setsid";

import type { ShellResult, ShellSpec } from "../../sdk/shell_function.ts";

export {
  SHELL_FUNCTION_NAME,
  shellFunctionSource,
  type ShellResult,
  type ShellSpec,
} from "../../sdk/shell_function.ts";

/** Replaces `{name}` / `{0}` placeholders; a placeholder with no value is an error. */
export function fillPlaceholders(
  cmd: string,
  args: readonly unknown[],
  kwargs: Record<string, unknown>,
): string {
  return cmd.replace(/\{\{|\}\}|\{([A-Za-z_0-9]*)\}/g, (whole, key: string | undefined) => {
    if (whole === "{{") return "{";
    if (whole === "}}") return "}";
    const k = key ?? "";
    const value = /^\d+$/.test(k)
      ? args[Number(k)]
      : Object.hasOwn(kwargs, k)
      ? kwargs[k]
      : undefined;
    if (value === undefined) {
      throw new RangeError(`ShellFunction command has placeholder "{${k}}" but no argument for it`);
    }
    return String(value);
  });
}

/** The last `n` lines of `text`. */
export function lastLines(text: string, n: number): string {
  const lines = text.split("\n");
  const trailing = lines.at(-1) === "" ? 1 : 0;
  return lines.length - trailing <= n ? text : lines.slice(-n - trailing).join("\n");
}

/** Options of {@linkcode runShell}. */
export interface RunShellOptions {
  /** The command's whole environment. @default this process's */
  env?: Record<string, string>;
  /** Aborting it kills the command's whole tree (the task was cancelled or ran out of time). */
  signal?: AbortSignal;
}

/** Runs a ShellFunction task. */
export async function runShell(
  spec: ShellSpec,
  args: readonly unknown[],
  kwargs: Record<string, unknown>,
  options: RunShellOptions = {},
): Promise<ShellResult> {
  if (typeof spec?.cmd !== "string") {
    throw new TypeError("ShellFunction spec has no cmd string");
  }
  const cmd = fillPlaceholders(spec.cmd, args, kwargs);
  const timeoutS = spec.timeout_s ?? spec.walltime_s;
  // In its own session (setsid) the whole command tree can be killed on timeout; killing only
  // the shell would leave its children holding the output pipes open.
  const child = new Deno.Command(SETSID, {
    args: ["/bin/sh", "-c", cmd],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env, clearEnv: true } : {}),
  }).spawn();
  const killTree = () => {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  };
  let timedOut = false;
  const timer = timeoutS === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    killTree();
  }, timeoutS * 1000);
  options.signal?.addEventListener("abort", killTree, { once: true });
  let out: Deno.CommandOutput;
  try {
    out = await child.output();
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", killTree);
  }
  const n = spec.snippet_lines ?? 1000;
  const dec = new TextDecoder();
  let stderr = lastLines(dec.decode(out.stderr), n);
  let returncode = out.code;
  if (timedOut) {
    returncode = 124;
    stderr += `\nCommand timed out after ${timeoutS} s`;
  }
  const result = { returncode, stdout: lastLines(dec.decode(out.stdout), n), stderr, cmd };
  if (returncode !== 0 && spec.fail_on_nonzero) {
    const err = new Error(
      `Shell command "${cmd}" exited with code ${returncode}: ${lastLines(stderr, 5).trim()}`,
    );
    err.name = "ShellCommandFailed";
    throw err;
  }
  return result;
}
