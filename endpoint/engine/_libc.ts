/**
 * glibc's own functions through FFI, for what Deno does not offer (`malloc_trim`, `prctl`).
 *
 * @module
 */

/**
 * `symbols` of glibc, or null where they cannot be had: not Linux, not glibc (musl, for one), or
 * no `ffi` permission. Best effort: callers carry on without them.
 */
export function libcSymbols<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] | null {
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    return Deno.dlopen("libc.so.6", symbols).symbols;
  } catch {
    return null;
  }
}
