/**
 * Broker addresses when the broker is a cluster: the service is configured with a list of AMQP
 * URLs (comma-separated), hands the list out beside the single `connection_url` older peers
 * read, and every AMQP link (the service's, the endpoint daemon's, the SDK's result stream)
 * connects to the first node of the list that answers, starting after the node it lost. The
 * reconnect loops around it keep their one backoff (`_backoff.ts`): a whole pass over the list
 * is one attempt.
 *
 * @module
 */

/**
 * Splits a comma-separated list of AMQP URLs (spaces around commas allowed) and checks each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseBrokerUrls } from "./_broker_addresses.ts";
 * assert.deepEqual(
 *   parseBrokerUrls("amqp://a:1@h1:5672, amqp://a:1@h2:5672"),
 *   ["amqp://a:1@h1:5672", "amqp://a:1@h2:5672"],
 * );
 * assert.throws(() => parseBrokerUrls("http://h1"), /amqp:\/\/ or amqps:\/\//);
 * ```
 */
export function parseBrokerUrls(text: string, what = "broker URL"): string[] {
  const urls = text.split(",").map((u) => u.trim()).filter((u) => u !== "");
  if (urls.length === 0) throw new TypeError(`Invalid ${what} "${text}": no URL given`);
  for (const u of urls) {
    let protocol: string;
    try {
      protocol = new URL(u).protocol;
    } catch {
      throw new TypeError(`Invalid ${what} "${redact(u)}": not a URL`);
    }
    if (protocol !== "amqp:" && protocol !== "amqps:") {
      throw new TypeError(`Invalid ${what} "${redact(u)}": expected amqp:// or amqps://`);
    }
  }
  return urls;
}

/**
 * The addresses of an answer: its `connection_urls` list when it has one (a service that knows
 * a cluster), else its single `connection_url`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { brokerAddresses } from "./_broker_addresses.ts";
 * assert.deepEqual(brokerAddresses({ connection_url: "amqp://h1" }), ["amqp://h1"]);
 * assert.deepEqual(
 *   brokerAddresses({ connection_url: "amqp://h1", connection_urls: ["amqp://h1", "amqp://h2"] }),
 *   ["amqp://h1", "amqp://h2"],
 * );
 * ```
 */
export function brokerAddresses(
  info: { connection_url: string; connection_urls?: readonly string[] | undefined },
): string[] {
  const list = info.connection_urls?.filter((u) => typeof u === "string" && u !== "");
  return list && list.length > 0 ? [...list] : [info.connection_url];
}

/** `host:port` of an AMQP URL, without credentials, for logs and errors. */
export function brokerHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === "amqps:" ? "5671" : "5672")}`;
  } catch {
    return "(unparsable address)";
  }
}

/** What {@linkcode connectFirst} connected to. */
export interface Connected<T> {
  /** What `connect` returned. */
  value: T;
  /** The index in the list of the node that answered. */
  index: number;
}

/**
 * Tries `connect` on each of `urls` in turn, starting at `start` (modulo the length) and
 * wrapping around, and returns the first that succeeds. A refusal that is no node's fault (a
 * login or a vhost refused: AMQP code 403 or 530) is thrown at once, since every node of a
 * cluster would answer the same. When every node fails, throws an error naming each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectFirst } from "./_broker_addresses.ts";
 * const up = new Set(["amqp://h2"]);
 * const got = await connectFirst(["amqp://h1", "amqp://h2"], 0, (url) =>
 *   up.has(url) ? Promise.resolve(url) : Promise.reject(new Error("ECONNREFUSED")));
 * assert.deepEqual(got, { value: "amqp://h2", index: 1 });
 * ```
 */
export async function connectFirst<T>(
  urls: readonly string[],
  start: number,
  connect: (url: string) => Promise<T>,
): Promise<Connected<T>> {
  if (urls.length === 0) throw new TypeError("Cannot connect to the broker: no address given");
  const failures: string[] = [];
  let last: unknown;
  for (let i = 0; i < urls.length; i++) {
    const index = (((start + i) % urls.length) + urls.length) % urls.length;
    const url = urls[index]!;
    try {
      return { value: await connect(url), index };
    } catch (err) {
      if (isRefusal(err) || urls.length === 1) throw err;
      last = err;
      failures.push(`${brokerHost(url)}: ${(err as Error)?.message ?? String(err)}`);
    }
  }
  const error = new Error(
    `Cannot reach any of ${urls.length} broker nodes (${failures.join("; ")})`,
    { cause: last },
  );
  const code = (last as { code?: unknown })?.code;
  if (code !== undefined) Object.assign(error, { code });
  throw error;
}

function isRefusal(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return e?.code === 403 || e?.code === 530 ||
    /ACCESS_REFUSED|NOT_ALLOWED/.test(String(e?.message ?? ""));
}

function redact(url: string): string {
  return url.replace(/:\/\/([^:/@]+):[^@]+@/, "://$1:***@");
}
