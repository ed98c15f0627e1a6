/**
 * The service's HTTP app: a Hono value built from small route modules. It holds no sockets of its
 * own, so tests drive it with `app.request()`; `server.ts` puts it on `Deno.serve`. The route
 * modules depend on `context.ts` (what every route can reach), never on this module.
 *
 * @module
 */
import { Hono } from "hono";
import { getLogger } from "@logtape/logtape";
import { authenticate } from "./auth.ts";
import { idempotency } from "./idempotency.ts";
import { HttpError } from "./http_error.ts";
import { RateLimiter } from "./rate_limiter.ts";
import { BrokerUnavailable } from "./broker.ts";
import type { AppDeps, AppEnv } from "./context.ts";
import { authRoutes } from "./routes/auth.ts";
import { loginRoutes } from "./routes/login.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { Sessions } from "./session.ts";
import { DEFAULT_SIGN_IN_SETTINGS, SignInGuard } from "./sign_in_guard.ts";
import { containerRoutes } from "./routes/containers.ts";
import { functionRoutes } from "./routes/functions.ts";
import { endpointRoutes } from "./routes/endpoints.ts";
import { taskRoutes } from "./routes/tasks.ts";
import { metricsRoutes } from "./routes/metrics.ts";

const log = getLogger(["funcx", "service", "http"]);

/** The service version reported at `/v2/version`. */
export const API_VERSION = "0.1.0";

/** The routes whose POSTs honour an `Idempotency-Key` header. */
export const IDEMPOTENT_PATHS: readonly string[] = [
  "/v2/submit",
  "/v2/functions",
  "/v2/containers",
];

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
  app.route("/", metricsRoutes(deps));

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
