/**
 * The dashboard: pages a signed-in user reads in a browser, on the same origin as the API.
 *
 * - `/` their endpoints: status (online, offline, locked), last heartbeat, workers, blocks,
 *   tasks waiting; `/endpoints/{id}` one endpoint with its online history;
 * - `/groups` their recent task groups with progress by state; `/groups/{id}` one group with its
 *   tasks, updated live by polling `/groups/{id}/progress` (JSON) while it runs;
 * - `/tasks/{id}` one task: its hops as a chart, the function, the endpoint, and the result or
 *   the remote error with its stack;
 * - `/functions` the functions they registered.
 *
 * Pages render on the server; charts are SVG; the one script (`/assets/dashboard.js`) only polls
 * and reloads. Anything that is not the user's own is "not found", whatever its id.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import type { AppDeps, AppEnv } from "../context.ts";
import type { Sessions } from "../session.ts";
import { SCRIPT, STYLESHEET } from "../dashboard/_layout.ts";
import type { PageHandler } from "../dashboard/_views.ts";
import { endpointPage, endpointsPage } from "../dashboard/_endpoint_pages.ts";
import { groupPage, groupProgress, groupsPage, taskPage } from "../dashboard/_task_pages.ts";
import { functionsPage } from "../dashboard/_functions_page.ts";

/** Dashboard routes, mounted at `/`. */
export function dashboardRoutes(deps: AppDeps, sessions: Sessions): Hono<AppEnv> {
  const { store } = deps;

  /** Runs `handler` for a signed-in user; others are sent to sign in (or get a 401). */
  const guarded = (handler: PageHandler) => async (c: Context<AppEnv>) => {
    const s = await sessions.current(c);
    if (s) return handler(store, c, s);
    if (c.req.method === "GET" && !c.req.path.endsWith("/progress")) {
      const url = new URL(c.req.url);
      return c.redirect(`/login?next=${encodeURIComponent(url.pathname + url.search)}`, 303);
    }
    return c.json({ code: "unauthorized", reason: "Sign in first" }, 401);
  };

  return new Hono<AppEnv>()
    .get("/assets/dashboard.css", () =>
      new Response(STYLESHEET, {
        headers: {
          "content-type": "text/css; charset=utf-8",
          "cache-control": "public, max-age=300",
          "x-content-type-options": "nosniff",
        },
      }))
    .get("/assets/dashboard.js", () =>
      new Response(SCRIPT, {
        headers: {
          "content-type": "text/javascript; charset=utf-8",
          "cache-control": "public, max-age=300",
          "x-content-type-options": "nosniff",
        },
      }))
    .get("/", guarded(endpointsPage))
    .get("/endpoints/:id", guarded(endpointPage))
    .get("/groups", guarded(groupsPage))
    .get("/groups/:id/progress", guarded(groupProgress))
    .get("/groups/:id", guarded(groupPage))
    .get("/tasks/:id", guarded(taskPage))
    .get("/functions", guarded(functionsPage));
}
