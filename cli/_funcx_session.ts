/**
 * What every `funcx` command shares: its global options, the logged-in client, JSON output, and
 * a task group's id from a UUID or a name.
 *
 * @module
 */
import { type FuncXClient, LoginManager } from "../mod.ts";
import { loginClient } from "./_endpoint_login.ts";
import { EXIT, FuncxCliError } from "./_funcx_output.ts";

/** Options every `funcx` command takes. */
export interface GlobalOptions {
  /** Where the login and the function cache are kept. */
  configDir: string;
  /** Print one JSON document on stdout. */
  json: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Prints one JSON document on stdout. */
export function print(value: unknown): void {
  console.log(JSON.stringify(value));
}

/** The service address: `FUNCX_SERVICE_ADDRESS`, else `FUNCX_SDK_ENVIRONMENT`'s, else local. */
export function serviceAddress(): string {
  return new LoginManager().serviceAddress;
}

/** A logged-in client: client credentials, a stored login, or (on a terminal) the device flow. */
export async function client(g: GlobalOptions): Promise<FuncXClient> {
  return (await loginClient(serviceAddress(), {
    configDir: g.configDir,
    interactive: Deno.stdin.isTerminal() && Deno.stderr.isTerminal(),
  })).client;
}

/**
 * A task group's id: a UUID as given, or a name (`nightly-2026-01-31`) turned into the same UUID
 * every time for the same user, so a cron job needs no state to find its group again.
 */
export async function taskGroupId(c: FuncXClient, group: string): Promise<string> {
  if (UUID.test(group)) return group.toLowerCase();
  if (!/^[\w.:@+-]{1,200}$/.test(group)) {
    throw new FuncxCliError(
      EXIT.USAGE,
      "usage",
      `Invalid task group "${group}": use a UUID or a name of letters, digits and . _ : @ + -`,
    );
  }
  const me = await c.whoami();
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${me.id}\n${group}`)),
  );
  digest[6] = (digest[6]! & 0x0f) | 0x80; // version 8: custom
  digest[8] = (digest[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const hex = Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}
