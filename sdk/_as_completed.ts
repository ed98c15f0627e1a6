/**
 * `FuncXExecutor.asCompleted`: futures in the order they settle, whatever order they were
 * submitted in.
 *
 * @module
 */
import type { FuncXFuture } from "./future.ts";

/**
 * A settled future from {@linkcode FuncXExecutor.asCompleted} and its index in the input.
 *
 * @example What asCompleted yields
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CompletedFuture, FuncXExecutor, FuncXFuture } from "@funcx/sdk";
 * const futures = [new FuncXFuture<number>(), new FuncXFuture<number>()];
 * setTimeout(() => futures[1]!.setResult(2), 5);
 * setTimeout(() => futures[0]!.setResult(1), 30);
 * const order: number[] = [];
 * for await (const done of FuncXExecutor.asCompleted(futures)) {
 *   const c: CompletedFuture<number> = done;
 *   order.push(c.index);
 * }
 * assert.deepEqual(order, [1, 0]);
 * ```
 */
export interface CompletedFuture<T> {
  /** The settled future. */
  future: FuncXFuture<T>;
  /** Its position in the futures given to `asCompleted`. */
  index: number;
}

/** Yields `futures` as they settle, each with its index (see `FuncXExecutor.asCompleted`). */
export async function* asCompleted<T>(
  futures: Iterable<FuncXFuture<T>>,
): AsyncGenerator<CompletedFuture<T>> {
  const all = [...futures];
  const ready: CompletedFuture<T>[] = [];
  let wake: (() => void) | undefined;
  all.forEach((future, index) =>
    future.onSettled(() => {
      ready.push({ future, index });
      wake?.();
    })
  );
  for (let handed = 0; handed < all.length; handed++) {
    if (ready.length === 0) await new Promise<void>((r) => (wake = r));
    wake = undefined;
    yield ready.shift()!;
  }
}
