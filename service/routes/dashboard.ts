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
import { html } from "hono/html";
import { deserialize, deserializeFunction, isTerminalState } from "../../sdk/protocol/mod.ts";
import { isUuid } from "../http_error.ts";
import type { AppDeps, AppEnv } from "../context.ts";
import type { EndpointRecord, FunctionRecord, TaskGroupSummary } from "../store.ts";
import { type Session, type Sessions, withCookies } from "../session.ts";
import { ago, duration, type Html, page, SCRIPT, STYLESHEET, when } from "../dashboard/_layout.ts";
import {
  barLayout,
  bucketCounts,
  bucketLegend,
  bucketOf,
  hopChart,
  hopsOf,
  percentDone,
  progressBar,
  uptimeStrip,
} from "../dashboard/_charts.ts";

/** Tasks listed on a group's page and in its progress. */
const GROUP_TASKS_SHOWN = 500;
/** Task groups listed. */
const GROUPS_SHOWN = 50;
/** Seconds of online history shown for an endpoint. */
const HISTORY_S = 3600;

type Handler = (c: Context<AppEnv>, s: Session) => Promise<Response>;

function text(v: unknown, max = 4000): string {
  let s: string;
  try {
    s = typeof v === "string" ? v : Deno.inspect(v, {
      depth: 4,
      colors: false,
      iterableLimit: 50,
      strAbbreviateSize: 2000,
      breakLength: 100,
    });
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max)}\n… (${s.length - max} more characters)` : s;
}

/** A remote error as stored: serialized `{name, message, stack}`, or plain text. */
function remoteError(exception: string | null): { name: string; message: string; stack: string } {
  if (!exception) return { name: "Error", message: "The task failed with no details", stack: "" };
  try {
    const v = deserialize(exception) as Record<string, unknown> | null;
    if (v && typeof v === "object" && typeof v["message"] === "string") {
      return {
        name: typeof v["name"] === "string" ? v["name"] : "Error",
        message: v["message"],
        stack: typeof v["stack"] === "string" ? v["stack"] : "",
      };
    }
    return { name: "Error", message: text(v), stack: "" };
  } catch {
    return { name: "Error", message: exception, stack: "" };
  }
}

function functionSource(fn: FunctionRecord): string {
  try {
    return deserializeFunction(fn.code).source;
  } catch {
    return fn.code;
  }
}

function badge(status: string, bucket: string = status): Html {
  return html`<span class="badge s-${bucket}">${status}</span>`;
}

/** An endpoint's status now, with what its last report said. */
interface EndpointView {
  ep: EndpointRecord;
  status: "online" | "offline" | "locked";
  state: Record<string, unknown>;
  lastReportAt: number | null;
  waiting: number;
}

function n(v: unknown): number {
  const x = Number(v);
  return Number.isFinite(x) ? x : 0;
}

/** Dashboard routes, mounted at `/`. */
export function dashboardRoutes(deps: AppDeps, sessions: Sessions): Hono<AppEnv> {
  const { store } = deps;

  /** Runs `handler` for a signed-in user; others are sent to sign in (or get a 401). */
  const guarded = (handler: Handler) => async (c: Context<AppEnv>) => {
    const s = await sessions.current(c);
    if (s) return handler(c, s);
    if (c.req.method === "GET" && !c.req.path.endsWith("/progress")) {
      const url = new URL(c.req.url);
      return c.redirect(`/login?next=${encodeURIComponent(url.pathname + url.search)}`, 303);
    }
    return c.json({ code: "unauthorized", reason: "Sign in first" }, 401);
  };

  const notFound = (s: Session, what: string) =>
    page({
      title: "Not found",
      user: s.user.name,
      csrf: s.csrf,
      status: 404,
      body: html`
        <p>You have no ${what} with that id.</p>
        <p><a href="/">Back to the dashboard</a></p>
      `,
    });

  const endpointViews = async (eps: EndpointRecord[]): Promise<EndpointView[]> => {
    const now = Date.now() / 1000;
    const waiting = await store.waitingTasks(eps.map((e) => e.id));
    return await Promise.all(eps.map(async (ep) => {
      const [live, uptime] = await Promise.all([
        store.endpointStatus(ep.id, now),
        store.endpointUptime(ep.id, 0),
      ]);
      const last = uptime.at(-1);
      const state = live?.state ?? {};
      return {
        ep,
        status: ep.lockedUntil > now ? "locked" : live ? "online" : "offline",
        state,
        lastReportAt: last ? last.lastReportAt : null,
        waiting: (waiting.get(ep.id) ?? 0) + n(state["pending_tasks"]),
      };
    }));
  };

  const workers = (st: Record<string, unknown>) => {
    const total = n(st["total_workers"]);
    const idle = n(st["idle_workers"]);
    return { total, idle, busy: Math.max(0, total - idle), managers: n(st["managers"]) };
  };

  const blocks = (st: Record<string, unknown>) => {
    const b = (st["blocks"] ?? {}) as Record<string, unknown>;
    return { pending: n(b["pending"]), running: n(b["running"]), failed: n(b["failed"]) };
  };

  /** The head and rows of a table of task groups (the overview's and the list's). */
  const groupRows = (groups: readonly TaskGroupSummary[]) =>
    html`
      <thead>
        <tr>
          <th scope="col">Task group</th>
          <th scope="col" class="hide-narrow">Created</th>
          <th scope="col" class="num">Tasks</th>
          <th scope="col">Progress</th>
          <th scope="col" class="num">Done</th>
          <th scope="col" class="hide-narrow">By state</th>
        </tr>
      </thead>
      <tbody>${groups.map(groupRow)}</tbody>
    `;
  const groupRow = (g: TaskGroupSummary) => {
    const counts = bucketCounts(g.counts);
    const pct = percentDone(counts, g.total);
    return html`
      <tr>
        <td><a href="/groups/${g.id}" class="mono">${g.id}</a></td>
        <td class="hide-narrow">${when(g.createdAt)}</td>
        <td class="num">${g.total}</td>
        <td>${progressBar(counts, g.total, `${pct} % done`)}</td>
        <td class="num">${pct} %</td>
        <td class="hide-narrow">${counts.waiting} waiting, ${counts.running} running, ${counts
          .success}
      success, ${counts.failed} failed</td>
      </tr>
    `;
  };

  const progressOf = async (groupId: string) => {
    const g = await store.taskGroupSummary(groupId);
    const counts = bucketCounts(g?.counts ?? {});
    const total = g?.total ?? 0;
    const tasks = await store.listGroupTasks(groupId, GROUP_TASKS_SHOWN);
    return {
      total,
      counts,
      bars: barLayout(counts, total),
      percent: percentDone(counts, total),
      done: total > 0 && counts.success + counts.failed === total,
      tasks: tasks.map((t) => ({
        id: t.id,
        status: t.status,
        bucket: bucketOf(t.status),
        took: t.completionT ? duration((t.completionT - t.createdAt) * 1000) : null,
      })),
    };
  };

  const ownsGroup = async (id: string, s: Session) =>
    isUuid(id) && await store.taskGroupOwner(id.toLowerCase()) === s.user.id;

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
    .get(
      "/",
      guarded(async (c, s) => {
        const now = Date.now() / 1000;
        const views = await endpointViews(await store.listEndpoints(s.user.id));
        const groups = await store.listTaskGroups(s.user.id, 5);
        const rows = views.map((v) => {
          const w = workers(v.state);
          const b = blocks(v.state);
          return html`
            <tr data-endpoint="${v.ep.id}">
              <td><a href="/endpoints/${v.ep.id}">${v.ep.name}</a><div class="id mono">${v.ep
                .id}</div></td>
              <td>${badge(v.status)}</td>
              <td>${ago(v.lastReportAt, now)}</td>
              <td class="num">${w.busy} busy / ${w.total}</td>
              <td class="num hide-narrow">${b.running} running, ${b.pending} pending${b.failed
                ? `, ${b.failed} failed`
                : ""}</td>
              <td class="num">${v.waiting}</td>
            </tr>
          `;
        });
        return withCookies(
          c,
          await page({
            title: "Endpoints",
            user: s.user.name,
            csrf: s.csrf,
            nav: "endpoints",
            body: html`<div data-refresh="5">
${
              views.length === 0
                ? html`<p class="notice">You have no endpoints yet. Start one with
<code>funcx-endpoint start</code>.</p>`
                : html`
                  <div class="table-wrap">
                    <table>
                      <caption class="muted">Updated ${when(
                        now,
                      )}; the page refreshes every 5 s.</caption>
                      <thead>
                        <tr>
                          <th scope="col">Endpoint</th>
                          <th scope="col">Status</th>
                          <th scope="col">Last heartbeat</th>
                          <th scope="col" class="num">Workers</th>
                          <th scope="col" class="num hide-narrow">Blocks</th>
                          <th scope="col" class="num">Tasks waiting</th>
                        </tr>
                      </thead>
                      <tbody>${rows}</tbody>
                    </table>
                  </div>
                `
            }
<h2>Recent task groups</h2>
${
              groups.length === 0 ? html`<p class="muted">No task groups yet.</p>` : html`
                <div class="table-wrap">
                  <table>
                    ${groupRows(groups)}
                  </table>
                </div>
                <p><a href="/groups">All task groups</a></p>
              `
            }
</div>`,
          }),
        );
      }),
    )
    .get(
      "/endpoints/:id",
      guarded(async (c, s) => {
        const id = c.req.param("id") ?? "";
        const ep = isUuid(id) ? await store.getEndpoint(id.toLowerCase()) : undefined;
        if (!ep || ep.ownerId !== s.user.id || ep.deleted) return notFound(s, "endpoint");
        const now = Date.now() / 1000;
        const [v] = await endpointViews([ep]);
        const uptime = await store.endpointUptime(ep.id, now - HISTORY_S);
        const w = workers(v!.state);
        const b = blocks(v!.state);
        const providerError = v!.state["provider_error"];
        return await page({
          title: ep.name,
          user: s.user.name,
          csrf: s.csrf,
          nav: "endpoints",
          body: html`<div data-refresh="5">
<dl class="facts">
<dt>Id</dt><dd class="mono">${ep.id}</dd>
<dt>Status</dt><dd>${badge(v!.status)}${
            v!.status === "locked"
              ? html`
                until ${when(ep.lockedUntil)}
              `
              : ""
          }</dd>
<dt>Last heartbeat</dt><dd>${ago(v!.lastReportAt, now)} (${when(v!.lastReportAt)})</dd>
<dt>Registered</dt><dd>${when(ep.createdAt)}; last ${when(ep.lastRegisteredAt)}</dd>
</dl>
<div class="cards">
<section class="card" aria-labelledby="w"><h2 id="w">Workers</h2>
<p><strong>${w.busy}</strong> busy, <strong>${w.idle}</strong> idle of ${w.total}, on
${w.managers} manager${w.managers === 1 ? "" : "s"}</p></section>
<section class="card" aria-labelledby="b"><h2 id="b">Blocks</h2>
<p><strong>${b.running}</strong> running, <strong>${b.pending}</strong> pending, ${b.failed}
failed${
            v!.state["provider"]
              ? html`
                (${String(v!.state["provider"])} provider)
              `
              : ""
          }</p>
${providerError ? html`<p class="error">${String(providerError)}</p>` : ""}</section>
<section class="card" aria-labelledby="q"><h2 id="q">Tasks waiting</h2>
<p><strong>${v!.waiting}</strong> in its queue or interchange</p></section>
</div>
<h2>Status, last hour</h2>
<ul class="legend"><li class="l-online">online</li><li class="l-offline">offline</li></ul>
${uptimeStrip(uptime, now - HISTORY_S, now)}
</div>`,
        });
      }),
    )
    .get(
      "/groups",
      guarded(async (_c, s) => {
        const groups = await store.listTaskGroups(s.user.id, GROUPS_SHOWN);
        const running = groups.some((g) => {
          const b = bucketCounts(g.counts);
          return b.success + b.failed < g.total;
        });
        return await page({
          title: "Task groups",
          user: s.user.name,
          csrf: s.csrf,
          nav: "groups",
          body: groups.length === 0 ? html`<p class="muted">No task groups yet.</p>` : html`
            <div class="table-wrap" ${running ? html`data-refresh="3"` : ""}>
              <table>
                <caption class="muted">
                  The ${GROUPS_SHOWN} most recent groups${running
                    ? "; while one runs, the list refreshes every 3 s"
                    : ""}.
                </caption>
                ${groupRows(groups)}
              </table>
            </div>
          `,
        });
      }),
    )
    .get(
      "/groups/:id/progress",
      guarded(async (c, s) => {
        const id = c.req.param("id") ?? "";
        if (!await ownsGroup(id, s)) {
          return c.json({ code: "task_group_not_found", reason: "No such task group" }, 404);
        }
        return c.json(await progressOf(id.toLowerCase()), 200, { "cache-control": "no-store" });
      }),
    )
    .get(
      "/groups/:id",
      guarded(async (c, s) => {
        const raw = c.req.param("id") ?? "";
        if (!await ownsGroup(raw, s)) return notFound(s, "task group");
        const id = raw.toLowerCase();
        const p = await progressOf(id);
        const tasks = await store.listGroupTasks(id, GROUP_TASKS_SHOWN);
        const fnNames = new Map<string, string>();
        for (const fid of new Set(tasks.map((t) => t.functionId))) {
          const fn = await store.getFunction(fid);
          fnNames.set(fid, fn ? fn.name || "(anonymous)" : fid);
        }
        const eps = new Map((await store.listEndpoints(s.user.id)).map((e) => [e.id, e.name]));
        return await page({
          title: `Task group ${id}`,
          user: s.user.name,
          csrf: s.csrf,
          nav: "groups",
          body: html`
            <section data-poll="/groups/${id}/progress" data-done="${String(p.done)}"
              aria-labelledby="progress-h">
            <h2 id="progress-h">Progress: <span data-percent aria-live="polite">${p
              .percent} %</span> of
            <span data-total>${p.total}</span> tasks</h2>
            ${progressBar(p.counts, p.total, "Tasks by state")}
            ${bucketLegend(p.counts)}
            </section>
            <h2>Tasks</h2>
            <div class="table-wrap">
              <table>
            ${p.total > tasks.length
              ? html`<caption class="muted">The first ${tasks.length} of ${p.total} tasks.</caption>`
              : ""}
            <thead><tr><th scope="col">Task</th><th scope="col">Status</th><th scope="col">Function</th>
            <th scope="col" class="hide-narrow">Endpoint</th><th scope="col" class="hide-narrow num">Took</th>
            </tr></thead>
            <tbody>${tasks.map((t) =>
              html`
                <tr>
                  <td><a href="/tasks/${t.id}" class="mono">${t.id}</a></td>
                  <td><span class="badge s-${bucketOf(t.status)}" data-task-status="${t.id}">${t
                    .status}</span></td>
                  <td>${fnNames.get(t.functionId) ?? t.functionId}</td>
                  <td class="hide-narrow"><a href="/endpoints/${t
                    .endpointId}">${eps.get(t.endpointId) ?? t.endpointId}</a></td>
                  <td class="hide-narrow num" data-task-took="${t.id}">${t.completionT
                    ? duration((t.completionT - t.createdAt) * 1000)
                    : "—"}</td>
                </tr>
              `
            )}</tbody></table>
            </div>
          `,
        });
      }),
    )
    .get(
      "/tasks/:id",
      guarded(async (c, s) => {
        const id = c.req.param("id") ?? "";
        const t = isUuid(id) ? await store.getTask(id.toLowerCase()) : undefined;
        if (!t || t.ownerId !== s.user.id) return notFound(s, "task");
        const [fn, ep] = await Promise.all([
          store.getFunction(t.functionId),
          store.getEndpoint(t.endpointId),
        ]);
        const hops = hopsOf(t.transitions ?? [], t.createdAt, t.completionT);
        const terminal = isTerminalState(t.status);
        const err = t.status === "failed" ? remoteError(t.exception) : undefined;
        let preview: string | undefined;
        if (t.status === "success" && t.result !== null) {
          try {
            preview = text(deserialize(t.result));
          } catch (e) {
            preview = `(cannot decode the result: ${(e as Error).message})`;
          }
        }
        return await page({
          title: `Task ${t.id}`,
          user: s.user.name,
          csrf: s.csrf,
          nav: "groups",
          body: html`<div ${terminal ? "" : html`data-refresh="2"`}>
<dl class="facts">
<dt>Status</dt><dd>${badge(t.status, bucketOf(t.status))}</dd>
<dt>Function</dt><dd>${
            fn ? html`<a href="/functions#f-${fn.id}">${fn.name || "(anonymous)"}</a>` : ""
          } <span class="mono id">${t.functionId}</span></dd>
<dt>Endpoint</dt><dd>${
            ep && ep.ownerId === s.user.id ? html`<a href="/endpoints/${ep.id}">${ep.name}</a>` : ""
          } <span class="mono id">${t.endpointId}</span></dd>
<dt>Task group</dt><dd><a href="/groups/${t.groupId}" class="mono">${t.groupId}</a></dd>
<dt>Submitted</dt><dd>${when(t.createdAt)}</dd>
<dt>Finished</dt><dd>${when(t.completionT)}${
            t.completionT ? ` (${duration((t.completionT - t.createdAt) * 1000)} after submit)` : ""
          }</dd>
${
            t.errorCode
              ? html`
                <dt>Error code</dt>
                <dd class="mono">${t.errorCode}</dd>
              `
              : ""
          }
</dl>
<h2>Timeline</h2>
${hops.length > 0 ? hopChart(hops) : html`<p class="muted">No transitions recorded yet.</p>`}
${
            err
              ? html`<h2>Remote error</h2>
<p class="error" role="alert"><strong>${err.name}</strong>: ${err.message}</p>
${err.stack ? html`<pre aria-label="Stack trace">${err.stack}</pre>` : ""}`
              : ""
          }
${
            preview !== undefined
              ? html`
                <h2>Result</h2>
                <pre aria-label="Result">${preview}</pre>
              `
              : ""
          }
${!terminal ? html`<p class="muted">Not finished yet; this page refreshes every 2 s.</p>` : ""}
</div>`,
        });
      }),
    )
    .get(
      "/functions",
      guarded(async (_c, s) => {
        const fns = await store.listFunctions(s.user.id, 200);
        return await page({
          title: "Functions",
          user: s.user.name,
          csrf: s.csrf,
          nav: "functions",
          body: fns.length === 0
            ? html`<p class="muted">You have registered no functions yet.</p>`
            : html`
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Function</th>
                      <th scope="col" class="hide-narrow">Registered</th>
                      <th scope="col">Visibility</th>
                      <th scope="col">Source</th>
                    </tr>
                  </thead>
                  <tbody>${fns.map((f) =>
                    html`
                      <tr id="f-${f.id}">
                        <td><strong>${f.name || "(anonymous)"}</strong><div class="id mono">${f
                          .id}</div>${f.description
                          ? html`<div class="muted">${f.description}</div>`
                          : ""}</td>
                        <td class="hide-narrow">${when(f.createdAt)}</td>
                        <td>${f.public ? "public" : "private"}${f.containerId
                          ? ", in a container"
                          : ""}</td>
                        <td>
                          <details>
                            <summary>Show</summary>
                            <pre>${text(functionSource(f))}</pre>
                          </details>
                        </td>
                      </tr>
                    `
                  )}</tbody>
                </table>
              </div>
            `,
        });
      }),
    );
}
