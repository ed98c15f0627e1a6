/**
 * Worker subprocesses without transparent huge pages. Where the kernel backs anonymous memory with
 * huge pages (`/sys/kernel/mm/transparent_hugepage/enabled` set to `always`, common on servers),
 * each page fault in a fresh Deno process can zero 2 MiB instead of 4 KiB, and hundreds of
 * workers starting together spend most of their time doing it: `perf` during a start of 256
 * workers put a fifth of all CPU in the kernel's `clear_page_erms`, half of it for huge pages.
 *
 * Linux keeps "no transparent huge pages" as a flag of a process (`PR_SET_THP_DISABLE`) that a
 * child inherits when it is forked and keeps across `execve`, so the flag is set just for the
 * synchronous spawn of a worker and put back at once: the worker runs without huge pages, the
 * process that spawns it keeps the system's setting. Best effort: where the flag cannot be set
 * (not Linux, not glibc, no `ffi` permission) workers start as before.
 *
 * @module
 */
import { libcSymbols } from "./_libc.ts";

/** `prctl` options (`linux/prctl.h`). */
const PR_SET_THP_DISABLE = 41;
const PR_GET_THP_DISABLE = 42;

type Prctl = (option: number, arg: bigint) => number;

let prctlFn: Prctl | null | undefined;

function loadPrctl(): Prctl | null {
  const libc = libcSymbols({
    prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  });
  return libc && ((option, arg) => libc.prctl(option, arg, 0n, 0n, 0n));
}

/**
 * Runs `spawn` (which must fork synchronously, as `Deno.Command.spawn` does) with transparent
 * huge pages off for this process, so the child it forks starts without them; the setting of
 * this process is what it was once `spawn` returns or throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { spawnWithoutHugePages } from "./huge_pages.ts";
 * const child = spawnWithoutHugePages(() =>
 *   new Deno.Command("grep", { args: ["THP_enabled", "/proc/self/status"], stdout: "piped" })
 *     .spawn()
 * );
 * const { stdout } = await child.output();
 * // The child may not have huge pages; this process still may.
 * assert.match(new TextDecoder().decode(stdout), /^THP_enabled:\s*0$/m);
 * assert.match(Deno.readTextFileSync("/proc/self/status"), /^THP_enabled:\s*1$/m);
 * ```
 */
export function spawnWithoutHugePages<T>(spawn: () => T): T {
  if (prctlFn === undefined) prctlFn = loadPrctl();
  const prctl = prctlFn;
  // Already off (set by whoever started this process): children inherit it anyway.
  if (prctl === null || prctl(PR_GET_THP_DISABLE, 0n) === 1) return spawn();
  if (prctl(PR_SET_THP_DISABLE, 1n) !== 0) return spawn();
  try {
    return spawn();
  } finally {
    prctl(PR_SET_THP_DISABLE, 0n);
  }
}
