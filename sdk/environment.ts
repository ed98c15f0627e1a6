/**
 * Which service the SDK talks to: an address given directly (option or `FUNCX_SERVICE_ADDRESS`),
 * or an environment named by `FUNCX_SDK_ENVIRONMENT` (or an option) and looked up in
 * `~/.funcx/environments.json` (`{"name": "https://..."}`); `local` is built in.
 *
 * @module
 */
import { join } from "node:path";
import { readFileSync } from "node:fs";
import process from "node:process";

/**
 * Built-in environments.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BUILTIN_ENVIRONMENTS } from "./environment.ts";
 * assert.ok(BUILTIN_ENVIRONMENTS["local"] === "http://127.0.0.1:8000");
 * ```
 */
export const BUILTIN_ENVIRONMENTS: Readonly<Record<string, string>> = {
  local: "http://127.0.0.1:8000",
};

/** A resolved environment. */
export interface ResolvedEnvironment {
  /** Name the token store keys tokens by. */
  environment: string;
  /** The service's base address, without a trailing slash. */
  serviceAddress: string;
}

function environmentsFile(): Record<string, string> {
  const dir = process.env.FUNCX_CONFIG_DIR ?? join(process.env.HOME ?? ".", ".funcx");
  try {
    const data = JSON.parse(readFileSync(join(dir, "environments.json"), "utf8"));
    return data && typeof data === "object" ? data : {};
  } catch (err) {
    if ((err as { code?: unknown }).code === "ENOENT") return {};
    throw new Error(`Cannot read ${join(dir, "environments.json")}: ${(err as Error).message}`);
  }
}

/**
 * Resolves the service address and environment name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveEnvironment } from "./environment.ts";
 * const env = resolveEnvironment({ serviceAddress: "http://127.0.0.1:9000/" });
 * assert.ok(env.serviceAddress === "http://127.0.0.1:9000");
 * ```
 */
export function resolveEnvironment(
  options: { serviceAddress?: string; environment?: string } = {},
): ResolvedEnvironment {
  const direct = options.serviceAddress ?? process.env.FUNCX_SERVICE_ADDRESS;
  const name = options.environment ?? process.env.FUNCX_SDK_ENVIRONMENT;
  if (direct) {
    const serviceAddress = direct.replace(/\/+$/, "");
    return { environment: name ?? serviceAddress, serviceAddress };
  }
  const env = name ?? "local";
  const known = { ...BUILTIN_ENVIRONMENTS, ...environmentsFile() };
  const address = known[env];
  if (!address) {
    throw new Error(
      `Unknown funcX environment "${env}": add it to ~/.funcx/environments.json ` +
        `or set FUNCX_SERVICE_ADDRESS (known: ${Object.keys(known).join(", ")})`,
    );
  }
  return { environment: env, serviceAddress: address.replace(/\/+$/, "") };
}
