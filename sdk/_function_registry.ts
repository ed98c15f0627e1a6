/**
 * The functions an executor has registered: one id per function (or `map` wrapper) and per
 * container it was used with, so that each is registered once. A registration that fails is
 * forgotten, and the next submit of that function registers it again.
 *
 * @module
 */

/**
 * Any function the executor can send.
 *
 * @example Functions the executor accepts
 * ```ts
 * import assert from "node:assert/strict";
 * import type { AnyFn } from "@funcx/sdk";
 * const fns: AnyFn[] = [(a: number, b: number) => a + b, async (s: string) => s.length];
 * assert.equal(fns.length, 2);
 * ```
 */
export type AnyFn = (...args: never[]) => unknown;

/**
 * Registered function ids by function (or map key), then by container id ("" for none).
 *
 * @example One registration per function and container
 * ```ts
 * import assert from "node:assert/strict";
 * import { FunctionRegistry } from "./_function_registry.ts";
 * const registry = new FunctionRegistry();
 * const double = (n: number) => n * 2;
 * const id = registry.remember(double, undefined, Promise.resolve("f1"));
 * assert.equal(registry.get(double, undefined), id);
 * assert.equal(registry.get(double, "c1"), undefined);
 * registry.remember(double, "c1", Promise.reject(new Error("refused"))).catch(() => {});
 * await Promise.resolve();
 * assert.equal(registry.get(double, "c1"), undefined, "a failed registration is forgotten");
 * assert.equal(await registry.ensure(double, undefined, () => Promise.resolve("f2")), "f1");
 * ```
 */
export class FunctionRegistry {
  readonly #ids = new Map<AnyFn | string, Map<string, Promise<string>>>();

  /** The id registered for `key` with `containerId`, if any. */
  get(key: AnyFn | string, containerId: string | undefined): Promise<string> | undefined {
    return this.#ids.get(key)?.get(containerId ?? "");
  }

  /** The id registered for `key` with `containerId`, registering it with `register` if none. */
  ensure(
    key: AnyFn | string,
    containerId: string | undefined,
    register: () => Promise<string>,
  ): Promise<string> {
    return this.get(key, containerId) ?? this.remember(key, containerId, register());
  }

  /** Keeps `id` for `key` and `containerId`; a failed registration is forgotten. */
  remember(
    key: AnyFn | string,
    containerId: string | undefined,
    id: Promise<string>,
  ): Promise<string> {
    const container = containerId ?? "";
    let byContainer = this.#ids.get(key);
    if (!byContainer) this.#ids.set(key, byContainer = new Map());
    byContainer.set(container, id);
    id.catch(() => byContainer.delete(container));
    return id;
  }
}
