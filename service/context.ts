/**
 * What every route module can reach: the app's dependencies and settings, the Hono environment
 * (the authenticated user), and the helpers that read and validate request bodies. The route
 * modules and the middleware depend on this module; `app.ts` builds the app from them.
 *
 * @module
 */
import type { z } from "zod";
import type { BrokerCredentials } from "./broker_credentials.ts";
import type { ServiceBroker } from "./broker.ts";
import { HttpError } from "./http_error.ts";
import type { OutboxRelay } from "./outbox_relay.ts";
import type { SignInSettings } from "./sign_in_guard.ts";
import type { Store, UserRecord } from "./store.ts";

/** Settings the routes need. */
export interface AppSettings {
  /**
   * AMQP URL handed to endpoints at registration and to result streams; for a cluster, the
   * nodes' URLs separated by commas (handed out as a list, the first also alone).
   */
  publicAmqpUrl: string;
  /** Access token lifetime in seconds. */
  tokenTtlS: number;
  /** Refresh token lifetime in seconds. */
  refreshTtlS: number;
  /** Seconds between device-flow polls. */
  deviceIntervalS: number;
  /** Address users reach the service at (for login links); the request's origin when unset. */
  publicAddress: string | undefined;
  /** Requests a client may make per window; 0 turns the limit off. */
  rateLimitRequests: number;
  /** Length of the rate limit window in seconds. */
  rateLimitWindowS: number;
  /** Largest result the service stores, in characters of its serialized form. */
  maxResultBytes: number;
  /** Largest request body in bytes. */
  maxRequestBytes: number;
  /**
   * Whether tasks carry their group's route, so that endpoints publish results straight to the
   * group's result streams (one broker hop) as well as to the service; false: results go
   * through the service to the streams (two hops). @default true
   */
  directResults?: boolean;
  /** Seconds a task and its result are kept. */
  taskTtlS: number;
  /**
   * Limits on password and client-secret guessing, and dashboard sessions.
   * @default {@linkcode DEFAULT_SIGN_IN_SETTINGS}
   */
  signIn?: SignInSettings;
  /**
   * A bearer token `GET /metrics` asks for; unset, the metrics are open (counts only).
   * @default undefined
   */
  metricsToken?: string | undefined;
}

/** What every route can reach. */
export interface AppDeps {
  store: Store;
  broker: ServiceBroker;
  /** Publishes what submits put in the outbox. */
  outbox: OutboxRelay;
  settings: AppSettings;
  /** Scoped broker logins; without it everyone gets the service's own broker URL. */
  credentials?: BrokerCredentials | undefined;
}

/** Hono environment of the app. */
export interface AppEnv {
  Variables: { user: UserRecord & { clientId: string | null } };
}

/**
 * Reads and size-checks a JSON body, answering 4xx on any problem. An empty body is `empty` when
 * given, else an error.
 */
export async function readJson(req: Request, maxBytes: number, empty?: unknown): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge(declared, maxBytes);
  const bytes = new Uint8Array(await req.arrayBuffer());
  if (bytes.byteLength > maxBytes) throw tooLarge(bytes.byteLength, maxBytes);
  if (empty !== undefined && bytes.byteLength === 0) return empty;
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new HttpError(400, "invalid_json", `Request body is not valid JSON: ${String(err)}`);
  }
}

function tooLarge(size: number, limit: number): HttpError {
  return new HttpError(
    413,
    "request_too_large",
    `Request of ${size} bytes is over the limit of ${limit} bytes: split it into smaller batches`,
    [size, limit],
  );
}

/** Validates `value` with a zod schema, answering 400 with the path of the bad field. */
export function parseBody<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.length ? issue.path.join(".") : "(body)";
  throw new HttpError(400, "bad_request", `Invalid request field "${path}": ${issue.message}`, [
    path,
  ]);
}
