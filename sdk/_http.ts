/**
 * The SDK's one HTTP transport: every request of `FuncXClient` goes through it, and `ky` does
 * the work through its options and hooks. Where it sits: below the client's route methods, above
 * `fetch`.
 *
 * - Retries (`retry.limit`): a network error, a timeout, a 429 or a 502/503/504, with the delays
 *   of the one backoff helper (`_backoff.ts`: exponential, capped, full jitter); a 429 or 503
 *   with `Retry-After` waits as long as it says (at most 30 s). A POST is retried too: it carries
 *   an `Idempotency-Key` that stays the same across its attempts (ky resends the same request),
 *   so the service does it once even when an answer was lost on the way back.
 * - A 409 `idempotency_key_in_progress` (the same request is still being carried out) is
 *   retried after `Retry-After` by an `afterResponse` hook.
 * - A 401 logs in again once per request (an `afterResponse` hook drops the token and forces a
 *   retry; the `beforeRetry` hook puts the new token on it).
 * - Every failure becomes a `FuncxAPIError`: the service's error envelope, or `network_error`
 *   (status 0) naming the address when the retries ran out. An abort by the caller's signal is
 *   thrown as the signal's reason.
 *
 * @module
 */
import ky, {
  isForceRetryError,
  isHTTPError,
  isNetworkError,
  isTimeoutError,
  type KyInstance,
} from "ky";
import { getLogger } from "@logtape/logtape";
import { backoffDelay } from "./_backoff.ts";
import { FuncxAPIError } from "./errors.ts";

const log = getLogger(["funcx", "sdk", "http"]);

/** Statuses that mean "the service or a proxy in front of it could not answer now". */
export const RETRY_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/** Longest wait a `Retry-After` may ask for, in ms. */
const MAX_RETRY_AFTER_MS = 30_000;

/** How a transport gets and renews its bearer token. */
export interface HttpAuth {
  /** The current token (logging in when there is none). */
  token(): Promise<string>;
  /** Forgets the token after a 401; whether a new login may give a better one. */
  invalidate(): boolean;
}

/** Options of {@linkcode HttpTransport}. */
export interface HttpTransportOptions {
  /** The service's base address. */
  serviceAddress: string;
  /** Per-attempt timeout, in ms. */
  timeoutMs: number;
  /** Attempts after the first one. */
  retries: number;
  /** Bearer tokens for authenticated requests. @default none: every request is anonymous */
  auth?: HttpAuth;
}

/** One request. */
export interface HttpRequest {
  /** The method. */
  method: "get" | "post" | "delete";
  /** Path under the service address, without a leading slash. */
  path: string;
  /** JSON body. */
  json?: unknown;
  /** Form body (`application/x-www-form-urlencoded`). */
  form?: Record<string, string>;
  /** Query parameters. */
  searchParams?: Record<string, string>;
  /** A POST's idempotency key (one is made when left out); `false` sends none. */
  idempotencyKey?: string | false;
  /** Whether to send the bearer token. @default true */
  auth?: boolean;
  /** What is being done, for error messages. @default "METHOD /path" */
  doing?: string;
  /** Aborts the request, its retries and their waits. */
  signal?: AbortSignal | undefined;
}

interface CallContext {
  /** Whether the request may log in again after a 401 (once). */
  relogin: boolean;
  auth: boolean;
  /** The answer a hook asked to retry, for the error when no retry is left. */
  retried?: { status: number; body: unknown };
}

/** The client's HTTP transport. */
export class HttpTransport {
  /** The service's base address. */
  readonly serviceAddress: string;
  readonly #ky: KyInstance;
  readonly #auth: HttpAuth | undefined;

  /** Builds the transport; nothing is sent until a request is made. */
  constructor(options: HttpTransportOptions) {
    this.serviceAddress = options.serviceAddress;
    this.#auth = options.auth;
    const setToken = async (request: Request, context: Record<string, unknown>) => {
      if (callOf(context).auth && this.#auth) {
        request.headers.set("authorization", `Bearer ${await this.#auth.token()}`);
      }
    };
    this.#ky = ky.create({
      prefix: options.serviceAddress,
      timeout: options.timeoutMs,
      retry: {
        limit: options.retries,
        // A POST is safe to repeat: it carries one idempotency key across its attempts.
        methods: ["get", "post", "delete"],
        statusCodes: [429, ...RETRY_STATUSES],
        afterStatusCodes: [429, 503],
        maxRetryAfter: MAX_RETRY_AFTER_MS,
        retryOnTimeout: true,
        // The delays come jittered from the one backoff helper.
        delay: (attempt) => backoffDelay(attempt, { minMs: 250, maxMs: 8_000 }),
      },
      hooks: {
        beforeRequest: [({ request, options }) => setToken(request, options.context)],
        beforeRetry: [async ({ request, options, error, retryCount }) => {
          log.warn("{method} {url}: {err}; retry {n}", {
            method: request.method,
            url: request.url,
            err: error.message,
            n: retryCount,
          });
          await setToken(request, options.context);
        }],
        afterResponse: [async ({ response, options }) => {
          const context = callOf(options.context);
          if (response.status === 401 && context.auth && context.relogin) {
            context.relogin = false;
            if (this.#auth?.invalidate()) {
              context.retried = { status: 401, body: await readBody(response.clone()) };
              return ky.retry({ delay: 0, code: "RELOGIN" });
            }
          }
          if (response.status === 409) {
            const body = await readBody(response.clone());
            if ((body as { code?: unknown } | null)?.code === "idempotency_key_in_progress") {
              context.retried = { status: 409, body };
              return ky.retry({ delay: retryAfterMs(response), code: "IN_PROGRESS" });
            }
          }
          return undefined;
        }],
      },
    });
  }

  /** Sends `req` and returns the answer's parsed body; throws a `FuncxAPIError` on failure. */
  async request<T>(req: HttpRequest): Promise<T> {
    return (await this.#send(req, true)).body as T;
  }

  /**
   * Sends `req` and returns the answer's status and parsed body, a refusal (4xx) included, for
   * protocols that speak in error answers (the OAuth device flow). Network errors, timeouts,
   * 429 and 5xx are retried as by {@linkcode HttpTransport.request}, then thrown.
   */
  async exchange(req: HttpRequest): Promise<{ status: number; body: unknown }> {
    return await this.#send(req, false);
  }

  async #send(
    req: HttpRequest,
    refusalsThrow: boolean,
  ): Promise<{ status: number; body: unknown }> {
    const doing = req.doing ?? `${req.method.toUpperCase()} /${req.path}`;
    const headers: Record<string, string> = {};
    if (req.method === "post" && req.idempotencyKey !== false) {
      headers["idempotency-key"] = req.idempotencyKey ?? crypto.randomUUID();
    }
    const context: CallContext = { relogin: true, auth: req.auth ?? true };
    let attempts = 1;
    let res: Response;
    try {
      res = await this.#ky(req.path, {
        method: req.method,
        headers,
        // ky copies `context`: the state goes in an object of its own, shared with the hooks.
        context: { call: context },
        ...(req.json === undefined ? {} : { json: req.json }),
        ...(req.form ? { body: new URLSearchParams(req.form) } : {}),
        ...(req.searchParams ? { searchParams: req.searchParams } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
        ...(refusalsThrow
          ? {}
          : { throwHttpErrors: (status: number) => status >= 500 || status === 429 }),
        hooks: {
          beforeError: [({ error, retryCount }) => {
            attempts = retryCount + 1;
            return error;
          }],
        },
      });
    } catch (err) {
      if (req.signal?.aborted) throw req.signal.reason;
      if (isHTTPError(err)) {
        throw apiError(err.response.status, err.data ?? err.response.statusText, doing);
      }
      if (isForceRetryError(err) && context.retried) {
        // A hook asked for a retry when none was left: the answer it saw is the outcome.
        throw apiError(context.retried.status, context.retried.body, doing);
      }
      if (isNetworkError(err) || isTimeoutError(err)) {
        const cause = (err as Error).cause;
        const why = cause instanceof Error ? `${(err as Error).message} (${cause.message})` : (
          err as Error
        ).message;
        throw new FuncxAPIError(
          0,
          "network_error",
          `${doing} failed after ${attempts} attempt(s): ${why}. ` +
            `Check that the service at ${this.serviceAddress} is reachable`,
          [],
          { cause: err },
        );
      }
      throw err;
    }
    return { status: res.status, body: await readBody(res) };
  }
}

function callOf(context: Record<string, unknown>): CallContext {
  return context["call"] as CallContext;
}

/** The wait a `Retry-After` header asks for (1 s when it is missing or unreadable), capped. */
function retryAfterMs(res: Response): number {
  const seconds = Number(res.headers.get("retry-after") ?? "1") || 1;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, seconds * 1000));
}

async function readBody(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

/** A `FuncxAPIError` from the service's error envelope (or whatever the answer held). */
export function apiError(status: number, body: unknown, doing: string): FuncxAPIError {
  const b = (body && typeof body === "object" ? body : {}) as Record<string, unknown>;
  const code = typeof b["code"] === "string" ? b["code"] : `http_${status}`;
  const reason = typeof b["reason"] === "string" ? b["reason"] : String(body ?? "");
  return new FuncxAPIError(
    status,
    code,
    `${doing}: service answered ${status} (${code}): ${reason}`,
    Array.isArray(b["error_args"]) ? b["error_args"] : [],
  );
}
