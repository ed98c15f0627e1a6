/**
 * The client's way to the service: the one HTTP transport (`_http.ts`: retries, backoff,
 * `Retry-After`, logging in again after a 401) with the client's bearer token on it, and the
 * check of the service's minimum SDK version before the first authenticated request. Where it
 * sits: below the resource modules (`_client_*.ts`) that `FuncXClient` composes, above `_http.ts`.
 *
 * @module
 */
import { type HttpAuth, type HttpRequest, HttpTransport, RETRY_STATUSES } from "./_http.ts";
import { FuncxAPIError } from "./errors.ts";
import { compareVersions, SDK_VERSION } from "./version.ts";

/**
 * What every {@linkcode FuncXClient} call accepts.
 *
 * @example Give up on a call after 10 s
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RequestOptions } from "@funcx/sdk";
 * const options: RequestOptions = { signal: AbortSignal.timeout(10_000) };
 * assert.equal(options.signal?.aborted, false);
 * ```
 */
export interface RequestOptions {
  /**
   * Aborts the call, its retries and their waits; the call rejects with the signal's reason.
   * @default none
   */
  signal?: AbortSignal;
}

/**
 * Whether an error from a {@linkcode FuncXClient} call means the service could not be reached or
 * could not answer now (network error, 502/503/504, 429, a repeat still in progress), so the same
 * call may succeed later, as opposed to a refusal. The executor waits out such errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncxAPIError, isTransientError } from "@funcx/sdk";
 * assert.ok(isTransientError(new FuncxAPIError(0, "network_error", "down")));
 * assert.ok(isTransientError(new FuncxAPIError(503, "http_503", "busy")));
 * assert.ok(!isTransientError(new FuncxAPIError(404, "task_not_found", "gone")));
 * assert.ok(!isTransientError(new Error("not an API error")));
 * ```
 */
export function isTransientError(err: unknown): boolean {
  if (!(err instanceof FuncxAPIError)) return false;
  return err.codeName === "network_error" || err.codeName === "idempotency_key_in_progress" ||
    err.httpStatus === 429 || RETRY_STATUSES.has(err.httpStatus);
}

/** Options of {@linkcode ClientTransport}, already checked and defaulted by the client. */
export interface ClientTransportOptions {
  /** The service's base address. */
  serviceAddress: string;
  /** Per-attempt timeout, in ms. */
  timeoutMs: number;
  /** Attempts after the first one. */
  retries: number;
  /** Whether to check the service's minimum SDK version before the first request. */
  checkVersion: boolean;
  /** Where the bearer token comes from. */
  auth: HttpAuth;
}

/** Options of one route request. */
export interface RouteOptions extends RequestOptions {
  /** A POST's idempotency key. @default a new one per call */
  idempotencyKey?: string;
}

/** The transport the resource modules send their routes through. */
export class ClientTransport {
  /** The service's base address. */
  readonly serviceAddress: string;
  readonly #http: HttpTransport;
  readonly #checkVersion: boolean;
  #versionChecked: Promise<void> | undefined;

  /** Builds the transport; nothing is sent until a request is made. */
  constructor(options: ClientTransportOptions) {
    this.serviceAddress = options.serviceAddress;
    this.#checkVersion = options.checkVersion;
    this.#http = new HttpTransport({
      serviceAddress: options.serviceAddress,
      timeoutMs: options.timeoutMs,
      retries: options.retries,
      auth: options.auth,
    });
  }

  /** Sends `req` as it is: no version check (logging in, reading the version). */
  async send<T>(req: HttpRequest): Promise<T> {
    return await this.#http.request<T>(req);
  }

  /** Sends an authenticated request through the transport, after the version check. */
  async request<T>(
    method: "get" | "post" | "delete",
    path: string,
    json?: unknown,
    options: RouteOptions = {},
  ): Promise<T> {
    if (this.#checkVersion) {
      this.#versionChecked ??= this.checkVersion().catch((err) => {
        this.#versionChecked = undefined; // an unreachable service is asked again next time
        throw err;
      });
      await abortable(this.#versionChecked, options.signal);
    }
    return await this.#http.request<T>({
      method,
      path,
      ...(json === undefined ? {} : { json }),
      ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}),
      signal: options.signal,
    });
  }

  /** Throws `sdk_outdated` when this SDK is older than the service's minimum SDK version. */
  async checkVersion(options: RequestOptions = {}): Promise<void> {
    const v = await this.version(options);
    const min = String(v["min_sdk_version"] ?? "0.0.0");
    if (compareVersions(SDK_VERSION, min) < 0) {
      throw new FuncxAPIError(
        426,
        "sdk_outdated",
        `This SDK is version ${SDK_VERSION} but the service at ${this.serviceAddress} needs ` +
          `${min} or newer: upgrade @funcx/sdk`,
        [SDK_VERSION, min],
      );
    }
  }

  /** The service's version info. */
  async version(options: RequestOptions = {}): Promise<Record<string, unknown>> {
    return await this.#http.request<Record<string, unknown>>({
      method: "get",
      path: "v2/version",
      searchParams: { service: "all" },
      auth: false,
      doing: "Cannot read the service version",
      signal: options.signal,
    });
  }
}

/** `promise`, or the signal's reason as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
