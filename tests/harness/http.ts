/**
 * Raw HTTP calls for API tests, so status codes and error envelopes are checked as sent.
 *
 * @module
 */

/** An answer of the service. */
export interface ApiAnswer {
  status: number;
  body: Record<string, unknown> & { code?: string; reason?: string };
  headers: Headers;
}

/** Sends a request with an optional bearer token and JSON (or raw string) body. */
export async function api(
  base: string,
  method: string,
  path: string,
  options: { token?: string; json?: unknown; raw?: string; form?: Record<string, string> } = {},
): Promise<ApiAnswer> {
  const headers: Record<string, string> = {};
  if (options.token) headers["authorization"] = `Bearer ${options.token}`;
  let body: BodyInit | undefined;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers["content-type"] = "application/json";
  } else if (options.raw !== undefined) {
    body = options.raw;
    headers["content-type"] = "application/json";
  } else if (options.form) {
    body = new URLSearchParams(options.form);
  }
  const res = await fetch(`${base}${path}`, { method, headers, ...(body ? { body } : {}) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed as ApiAnswer["body"], headers: res.headers };
}

/** Checks the error envelope shape and returns the code. */
export function envelopeCode(a: ApiAnswer): string {
  const b = a.body;
  if (typeof b.code !== "string" || typeof b.reason !== "string") {
    throw new Error(`Not an error envelope (${a.status}): ${JSON.stringify(b)}`);
  }
  if (b["http_status_code"] !== a.status || !Array.isArray(b["error_args"])) {
    throw new Error(`Bad envelope fields (${a.status}): ${JSON.stringify(b)}`);
  }
  return b.code;
}
