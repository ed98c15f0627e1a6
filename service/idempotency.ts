/**
 * Idempotent POSTs: a request to one of the creating routes (`/v2/submit`, `/v2/functions`,
 * `/v2/containers`) that carries an `Idempotency-Key` header is carried out once per user and
 * key. The key is reserved in the store before the route runs (an insert that conflicts, so two
 * replicas cannot both win) and the answer is stored after it; a repeat of the same request gets
 * the stored answer with `Idempotent-Replayed: true`. The SDK sends a fresh key per logical
 * request and keeps it across retries, so a submit whose answer was lost is not run twice.
 *
 * - same key, different method, path or body: 422 `idempotency_key_reused`;
 * - same key while the first attempt still runs: 409 `idempotency_key_in_progress`, Retry-After 1;
 * - a 5xx answer is not kept (the work did not happen or was undone): the key is released and a
 *   retry runs the request again;
 * - keys are kept 24 h; an attempt that has not finished after its lease (its replica died) may be
 *   taken over by a retry of the same request.
 *
 * Endpoint registration is not among them: its answer holds the endpoint's broker login, which
 * must not be kept at rest. It is idempotent by its id instead (the SDK always sends one), and a
 * repeat rotates the login, so the last answer is the one that works.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { getLogger } from "@logtape/logtape";
import type { AppEnv } from "./context.ts";
import { HttpError } from "./http_error.ts";
import { sha256Hex } from "./auth.ts";
import type { IdempotencyHold, IdempotencyRecord, Store } from "./store.ts";

const log = getLogger(["funcx", "service", "idempotency"]);

/** The request header that names a key. */
export const IDEMPOTENCY_HEADER = "idempotency-key";
/** The response header on a stored answer sent again. */
export const REPLAYED_HEADER = "idempotent-replayed";

/** Options of {@linkcode idempotency}. */
export interface IdempotencyOptions {
  /** Paths whose POSTs take part; other requests pass through untouched. */
  paths: readonly string[];
  /** Seconds a key and its answer are kept. @default 86400 */
  ttlS?: number;
  /**
   * Seconds an unfinished attempt holds its key before a retry may take over (after its replica
   * died). A submit run twice adds nothing (its task ids come from the key), so this is short.
   * @default 15
   */
  leaseS?: number;
  /** Largest body that is hashed; larger ones pass through (the route answers 413). @default Infinity */
  maxBodyBytes?: number;
}

/** Keys are 1–255 printable ASCII characters (what fits a header and a column comfortably). */
const KEY_RE = /^[\x20-\x7e]{1,255}$/;

/** Checks an `Idempotency-Key` value; throws 400 `invalid_idempotency_key` when it is bad. */
export function checkIdempotencyKey(key: string): string {
  if (!KEY_RE.test(key)) {
    throw new HttpError(
      400,
      "invalid_idempotency_key",
      `Invalid Idempotency-Key header (${key.length} characters): use 1-255 printable ASCII ` +
        "characters, for example a UUID",
      [key.slice(0, 255)],
    );
  }
  return key;
}

/** A middleware that makes POSTs to `options.paths` idempotent per user and key. */
export function idempotency(
  store: Store,
  options: IdempotencyOptions,
): MiddlewareHandler<AppEnv> {
  const paths = new Set(options.paths);
  const ttlS = options.ttlS ?? 86400;
  const leaseS = options.leaseS ?? 15;
  const maxBodyBytes = options.maxBodyBytes ?? Infinity;
  return async (c, next) => {
    const header = c.req.header(IDEMPOTENCY_HEADER);
    if (header === undefined || c.req.method !== "POST" || !paths.has(c.req.path)) {
      return await next();
    }
    const key = checkIdempotencyKey(header);
    if (Number(c.req.header("content-length") ?? "0") > maxBodyBytes) return await next();
    const body = new Uint8Array(await c.req.raw.clone().arrayBuffer());
    const request = {
      userId: c.get("user").id,
      key,
      method: c.req.method,
      path: c.req.path,
      requestHash: sha256Hex(body),
    };
    const now = Date.now() / 1000;
    const outcome = await store.reserveIdempotencyKey(request, { now, leaseS, ttlS });
    if (!outcome.reserved) return replay(outcome.existing, request);
    const hold: IdempotencyHold = { userId: request.userId, key, token: outcome.token };
    try {
      await next();
    } catch (err) {
      await release(store, hold);
      throw err;
    }
    await keep(store, hold, c);
  };
}

/** Stores the route's answer, or releases the key when there is nothing worth keeping. */
async function keep(store: Store, hold: IdempotencyHold, c: Context): Promise<void> {
  const res = c.res;
  if (res.status >= 500) {
    await release(store, hold);
    return;
  }
  try {
    const body = await res.clone().text();
    if (!await store.finishIdempotencyKey(hold, { status: res.status, body })) {
      log.warn("Idempotency key {key} was taken over before its answer was stored", {
        key: hold.key,
      });
    }
  } catch (err) {
    // The work is done and answered; a retry now sees the key in progress until its lease ends.
    log.error("Cannot store the answer of idempotency key {key}: {err}", { key: hold.key, err });
  }
}

async function release(store: Store, hold: IdempotencyHold): Promise<void> {
  await store.releaseIdempotencyKey(hold).catch((err) =>
    log.error("Cannot release idempotency key {key}: {err}", { key: hold.key, err })
  );
}

/** The answer to a request whose key is already recorded. */
function replay(
  existing: IdempotencyRecord,
  request: { method: string; path: string; requestHash: string; key: string },
): Response {
  if (
    existing.method !== request.method || existing.path !== request.path ||
    existing.requestHash !== request.requestHash
  ) {
    throw new HttpError(
      422,
      "idempotency_key_reused",
      `Idempotency-Key "${request.key}" was already used for another request ` +
        `(${existing.method} ${existing.path} with a different body): send a new key for a ` +
        "new request",
      [request.key],
    );
  }
  if (existing.state !== "done" || existing.responseStatus === null) {
    throw new HttpError(
      409,
      "idempotency_key_in_progress",
      `A request with Idempotency-Key "${request.key}" is still in progress: retry after it ` +
        "finished to get its answer",
      [request.key],
      undefined,
      {},
      { "retry-after": "1" },
    );
  }
  return new Response(existing.responseBody, {
    status: existing.responseStatus,
    headers: { "content-type": "application/json", [REPLAYED_HEADER]: "true" },
  });
}
