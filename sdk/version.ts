/**
 * This SDK's version, read from the package's `deno.json` so that it is never written twice,
 * and the comparison the client uses against the service's minimum SDK version.
 *
 * @module
 */
import config from "../deno.json" with { type: "json" };

/**
 * This SDK's version: the `version` of the published package.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SDK_VERSION } from "@funcx/sdk";
 * assert.match(SDK_VERSION, /^\d+\.\d+\.\d+/);
 * ```
 */
export const SDK_VERSION: string = config.version;

/**
 * Compares dotted versions numerically: negative, zero or positive.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compareVersions } from "./version.ts";
 * assert.ok(compareVersions("0.10.0", "0.9.9") > 0);
 * assert.equal(compareVersions("1.2", "1.2.0"), 0);
 * ```
 */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
