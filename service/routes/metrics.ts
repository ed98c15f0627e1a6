/**
 * `GET /metrics`: the service's metrics ({@linkcode serviceMetrics}) in Prometheus text format,
 * with the gauges read from the store at the scrape. Open by default, like funcX and Flower
 * (counts only: no task, user or endpoint is named); with `metricsToken` set it asks for
 * `Authorization: Bearer <token>`, which Prometheus sends with `authorization.credentials`.
 *
 * @module
 */
import { Hono } from "hono";
import { EXPOSITION_CONTENT_TYPE } from "../../sdk/_metrics.ts";
import type { AppDeps, AppEnv } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { refreshServiceGauges, serviceMetrics } from "../metrics.ts";
import { sameSecret } from "../session.ts";

/** The `/metrics` route. */
export function metricsRoutes(deps: AppDeps): Hono<AppEnv> {
  const token = deps.settings.metricsToken;
  return new Hono<AppEnv>().get("/metrics", async (c) => {
    if (token) {
      const m = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "");
      if (!m || !sameSecret(m[1]!, token)) {
        throw new HttpError(
          401,
          "unauthorized",
          "The metrics need 'Authorization: Bearer <metrics token>' (the service's " +
            "--metrics-token)",
          [],
          {},
          {},
          { "www-authenticate": 'Bearer realm="metrics"' },
        );
      }
    }
    await refreshServiceGauges(serviceMetrics, deps.store, deps.broker.connected);
    return c.body(await serviceMetrics.registry.render(), 200, {
      "content-type": EXPOSITION_CONTENT_TYPE,
    });
  });
}
