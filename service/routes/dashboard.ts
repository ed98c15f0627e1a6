/**
 * The dashboard: pages a signed-in user reads in a browser, on the same origin as the API.
 *
 * - `/` their endpoints: status (online, offline, locked), last heartbeat, workers, blocks,
 *   tasks waiting, and a live chart of the service's throughput and latency from its metrics;
 *   `/endpoints/{id}` one endpoint with its online history, and buttons to stop and lock it,
 *   unlock it, or delete it;
 * - `/groups` and `/tasks` their task groups and tasks, searched by state, function, endpoint and
 *   time, a page at a time; `/groups/{id}` one group with its tasks, updated live by polling
 *   `/groups/{id}/progress` (JSON) while it runs, and a button that cancels what has not finished;
 * - `/tasks/{id}` one task: its hops as a chart, the function, the endpoint, and the result or
 *   the remote error with its stack, and a button that cancels it while it runs;
 * - `/functions` the functions they registered.
 *
 * Pages render on the server; charts are SVG; the one script (`/assets/dashboard.js`) only polls
 * and reloads. Anything that is not the user's own is "not found", whatever its id. Every action
 * is a form posted with the session's CSRF token (`dashboard/_actions.ts`); a post without it, or
 * from another site, is refused (403) and changes nothing.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import type { AppDeps, AppEnv } from "../context.ts";
import type { Sessions } from "../session.ts";
import { SCRIPT, STYLESHEET } from "../dashboard/_layout.ts";
import type { PageHandler } from "../dashboard/_views.ts";
import { endpointPage, endpointsPage } from "../dashboard/_endpoint_pages.ts";
import {
  groupPage,
  groupProgress,
  groupsPage,
  taskPage,
  tasksPage,
} from "../dashboard/_task_pages.ts";
import { html } from "hono/html";
import { functionsPage } from "../dashboard/_functions_page.ts";
import {
  type ActionHandler,
  cancelGroupAction,
  cancelTaskAction,
  deleteEndpointAction,
  lockEndpointAction,
  unlockEndpointAction,
} from "../dashboard/_actions.ts";
import { page } from "../dashboard/_layout.ts";
import { HttpError } from "../http_error.ts";

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

  /** Runs `handler` for a signed-in user whose form carries the session's CSRF token. */
  const action = (handler: ActionHandler) => async (c: Context<AppEnv>) => {
    const s = await sessions.current(c);
    if (!s) return c.json({ code: "unauthorized", reason: "Sign in first" }, 401);
    const form = new URLSearchParams(await c.req.text());
    try {
      sessions.checkForm(c, form, s);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      return await page({
        title: "Not done",
        user: s.user.name,
        csrf: s.csrf,
        status: err.status,
        body: html`
          <p class="error" role="alert">${err.message}.</p>
          <p><a href="/">Back to the dashboard</a></p>
        `,
      });
    }
    return await handler(deps, c, s, form);
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
    .post("/groups/:id/cancel", action(cancelGroupAction))
    .get("/tasks", guarded(tasksPage))
    .get("/tasks/:id", guarded(taskPage))
    .post("/tasks/:id/cancel", action(cancelTaskAction))
    .post("/endpoints/:id/lock", action(lockEndpointAction))
    .post("/endpoints/:id/unlock", action(unlockEndpointAction))
    .post("/endpoints/:id/delete", action(deleteEndpointAction))
    .get("/functions", guarded(functionsPage));
}
