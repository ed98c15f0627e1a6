/**
 * The one HTTP error type of the service. Every failure a route can report is an
 * {@linkcode HttpError} with a stable string `code`; it renders itself as the funcX error
 * envelope `{code, reason, http_status_code, error_args}`.
 *
 * @module
 */

/** HTTP statuses an {@linkcode HttpError} may carry. */
export type ErrorStatus =
  | 400
  | 401
  | 403
  | 404
  | 405
  | 409
  | 410
  | 413
  | 415
  | 422
  | 423
  | 429
  | 500
  | 503;

/** Stable error codes the service answers with. */
export type ErrorCode =
  | "bad_request"
  | "invalid_json"
  | "invalid_uuid"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "task_not_found"
  | "container_not_found"
  | "task_group_not_found"
  | "task_group_access_forbidden"
  | "function_not_found"
  | "function_access_forbidden"
  | "function_not_permitted"
  | "endpoint_not_found"
  | "user_not_found"
  | "endpoint_access_forbidden"
  | "endpoint_already_registered"
  | "endpoint_locked"
  | "endpoint_deleted"
  | "request_too_large"
  | "rate_limited"
  | "too_many_attempts"
  | "csrf_failed"
  | "invalid_idempotency_key"
  | "idempotency_key_reused"
  | "idempotency_key_in_progress"
  | "broker_unavailable"
  | "internal_error";

/** The JSON body of every error answer. */
export interface ErrorEnvelope {
  code: ErrorCode;
  reason: string;
  http_status_code: number;
  error_args: unknown[];
}

/** An error that a route throws to answer with the funcX error envelope. */
export class HttpError extends Error {
  override name = "HttpError";
  readonly status: ErrorStatus;
  readonly code: ErrorCode;
  readonly errorArgs: unknown[];
  readonly #extra: Record<string, unknown>;
  readonly #headers: Record<string, string>;

  constructor(
    status: ErrorStatus,
    code: ErrorCode,
    reason: string,
    errorArgs: unknown[] = [],
    options?: ErrorOptions,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) {
    super(reason, options);
    this.status = status;
    this.code = code;
    this.errorArgs = errorArgs;
    this.#extra = extra;
    this.#headers = headers;
  }

  /** The envelope for this error (plus OAuth `error` fields where the route adds them). */
  toJSON(): ErrorEnvelope {
    return {
      ...this.#extra,
      code: this.code,
      reason: this.message,
      http_status_code: this.status,
      error_args: this.errorArgs,
    };
  }

  /** Renders this error as a JSON response. */
  toResponse(): Response {
    return Response.json(this.toJSON(), { status: this.status, headers: this.#headers });
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `value` is a UUID string in canonical form. */
export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID_RE.test(value);
}

/** Returns `value` lower-cased if it is a UUID, else throws a 400 `invalid_uuid`. */
export function requireUuid(value: unknown, what: string): string {
  if (!isUuid(value)) {
    throw new HttpError(
      400,
      "invalid_uuid",
      `Invalid ${what} UUID provided: ${JSON.stringify(value)}`,
      [
        value,
      ],
    );
  }
  return value.toLowerCase();
}
