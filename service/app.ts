/**
 * The service's HTTP app: a Hono value built from small route modules. It holds no sockets of its
 * own, so tests drive it with `app.request()`; `server.ts` puts it on `Deno.serve`.
 *
 * @module
 */
import { Hono } from "hono";
import type { z } from "zod";
import { getLogger } from "@logtape/logtape";
import { authenticate } from "./auth.ts";
import { idempotency } from "./idempotency.ts";
import { HttpError } from "./http_error.ts";
import { RateLimiter } from "./rate_limiter.ts";
import { BrokerUnavailable, type ServiceBroker } from "./broker.ts";
import type { BrokerCredentials } from "./broker_credentials.ts";
import type { OutboxRelay } from "./outbox_relay.ts";
import type { Store, UserRecord } from "./store.ts";
import { authRoutes } from "./routes/auth.ts";
import { loginRoutes } from "./routes/login.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { Sessions } from "./session.ts";
import { DEFAULT_SIGN_IN_SETTINGS, SignInGuard, type SignInSettings } from "./sign_in_guard.ts";
import { containerRoutes } from "./routes/containers.ts";
import { functionRoutes } from "./routes/functions.ts";
import { endpointRoutes } from "./routes/endpoints.ts";
import { taskRoutes } from "./routes/tasks.ts";

const log = getLogger(["funcx", "service", "http"]);

/** The service version reported at `/v2/version`. */
export const API_VERSION = "0.1.0";

/** The routes whose POSTs honour an `Idempotency-Key` header. */
export const IDEMPOTENT_PATHS: readonly string[] = [
  "/v2/submit",
  "/v2/functions",
  "/v2/containers",
];

/** Settings the routes need. */
export interface AppSettings {
  /** AMQP URL handed to endpoints at registration. */
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
  /** Seconds a task and its result are kept. */
  taskTtlS: number;
  /**
   * Limits on password and client-secret guessing, and dashboard sessions.
   * @default {@linkcode DEFAULT_SIGN_IN_SETTINGS}
   */
  signIn?: SignInSettings;
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

/** Builds the HTTP app. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.onError((err) => {
    if (err instanceof HttpError) return err.toResponse();
    if (err instanceof BrokerUnavailable) {
      return new HttpError(
        503,
        "broker_unavailable",
        `${err.message}: try again in a few seconds`,
        [],
        { cause: err },
        {},
        { "retry-after": "2" },
      ).toResponse();
    }
    log.error("Unhandled error: {err}", { err });
    return new HttpError(500, "internal_error", "Internal error; see the service log").toResponse();
  });
  app.notFound((c) =>
    new HttpError(404, "not_found", `No route for ${c.req.method} ${c.req.path}`).toResponse()
  );

  app.get("/v2/version", (c) => {
    if (c.req.query("service") === "all") {
      return c.json({ api: API_VERSION, min_sdk_version: "0.1.0", min_ep_version: "0.1.0" });
    }
    return c.json(API_VERSION);
  });
  const signIn = deps.settings.signIn ?? DEFAULT_SIGN_IN_SETTINGS;
  const sessions = new Sessions(deps.store, signIn, deps.settings.publicAddress);
  const guard = new SignInGuard(deps.store, signIn);
  app.route("/v2/oauth", authRoutes(deps, { sessions, guard }));
  app.route("/", loginRoutes(deps, { sessions, guard }));
  app.route("/", dashboardRoutes(deps, sessions));

  const limiter = new RateLimiter(deps.settings.rateLimitRequests, deps.settings.rateLimitWindowS);
  app.use("/v2/*", async (c, next) => {
    const user = await authenticate(deps.store, c.req.header("authorization"));
    limiter.check(user.clientId ?? user.id);
    c.set("user", user);
    await next();
  });
  // After authentication: keys are per user. Only the POSTs that create something take part.
  app.use(
    "/v2/*",
    idempotency(deps.store, {
      paths: IDEMPOTENT_PATHS,
      maxBodyBytes: deps.settings.maxRequestBytes,
    }),
  );
  app.get("/v2/whoami", (c) => {
    const u = c.get("user");
    return c.json({ id: u.id, username: u.name, client_id: u.clientId });
  });
  app.route("/v2/functions", functionRoutes(deps));
  app.route("/v2/containers", containerRoutes(deps));
  app.route("/v2/endpoints", endpointRoutes(deps));
  app.route("/v2", taskRoutes(deps));
  return app;
}
