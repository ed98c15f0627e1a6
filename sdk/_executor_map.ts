/**
 * What `FuncXExecutor.map` sends: the items cut into chunks, one task per chunk, each running a
 * wrapper function that applies the user's function to every item of its chunk in turn.
 *
 * @module
 */
import type { AnyFn } from "./_function_registry.ts";

/** The name the map wrapper is registered under. */
export const MAP_FUNCTION_NAME = "__funcx_map__";

/**
 * `items` in chunks of `size` (the last one may be shorter).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chunked } from "./_executor_map.ts";
 * assert.deepEqual(chunked([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
 * assert.deepEqual(chunked([], 3), []);
 * ```
 */
export function chunked<T>(items: Iterable<T>, size: number): T[][] {
  const chunks: T[][] = [];
  for (const item of items) {
    if (chunks.length === 0 || chunks[chunks.length - 1]!.length >= size) chunks.push([]);
    chunks[chunks.length - 1]!.push(item);
  }
  return chunks;
}

/**
 * The source of the wrapper that runs `fn` on every item of a chunk, in order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mapFunctionSource } from "./_executor_map.ts";
 * const wrapper = new Function(`return (${mapFunctionSource((n: number) => n + 1)})`)();
 * assert.deepEqual(await wrapper([1, 2]), [2, 3]);
 * ```
 */
export function mapFunctionSource(fn: AnyFn): string {
  return `async function ${MAP_FUNCTION_NAME}(items) {\n  const f = (${fn.toString()});\n` +
    `  const out = [];\n  for (const x of items) out.push(await f(x));\n  return out;\n}`;
}

const mapKeys = new WeakMap<AnyFn, string>();

/**
 * The key the map wrapper of `fn` is registered under (the same for every call with `fn`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mapKey } from "./_executor_map.ts";
 * const fn = (n: number) => n;
 * assert.equal(mapKey(fn), mapKey(fn));
 * assert.notEqual(mapKey(fn), mapKey((n: number) => n));
 * ```
 */
export function mapKey(fn: AnyFn): string {
  let k = mapKeys.get(fn);
  if (!k) {
    k = `map:${crypto.randomUUID()}`;
    mapKeys.set(fn, k);
  }
  return k;
}
