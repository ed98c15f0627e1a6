/**
 * The dashboard's task pages: `/groups`, the user's recent task groups with their progress;
 * `/groups/{id}`, one group with its tasks, updated live from `/groups/{id}/progress` (JSON);
 * `/tasks/{id}`, one task with its hops as a chart, and its result or remote error.
 *
 * @module
 */
import type { Context } from "hono";
import { html } from "hono/html";
import { deserialize, isTerminalState } from "../../sdk/protocol/mod.ts";
import { isUuid } from "../http_error.ts";
import type { AppEnv } from "../context.ts";
import type { Session } from "../session.ts";
import type { Store } from "../store.ts";
import { duration, page, when } from "./_layout.ts";
import { bucketCounts, bucketLegend, bucketOf, hopChart, hopsOf, progressBar } from "./_charts.ts";
import {
  badge,
  GROUP_TASKS_SHOWN,
  groupRows,
  notFound,
  progressOf,
  remoteError,
  text,
} from "./_views.ts";

/** Task groups listed. */
const GROUPS_SHOWN = 50;

async function ownsGroup(store: Store, id: string, s: Session): Promise<boolean> {
  return isUuid(id) && await store.taskGroupOwner(id.toLowerCase()) === s.user.id;
}

/** `/groups`: the user's recent task groups. */
export async function groupsPage(store: Store, _c: Context<AppEnv>, s: Session): Promise<Response> {
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
}

/** `/groups/{id}/progress`: a group's progress as JSON, which its page polls. */
export async function groupProgress(
  store: Store,
  c: Context<AppEnv>,
  s: Session,
): Promise<Response> {
  const id = c.req.param("id") ?? "";
  if (!await ownsGroup(store, id, s)) {
    return c.json({ code: "task_group_not_found", reason: "No such task group" }, 404);
  }
  return c.json(await progressOf(store, id.toLowerCase()), 200, { "cache-control": "no-store" });
}

/** `/groups/{id}`: one task group and its tasks. */
export async function groupPage(store: Store, c: Context<AppEnv>, s: Session): Promise<Response> {
  const raw = c.req.param("id") ?? "";
  if (!await ownsGroup(store, raw, s)) return notFound(s, "task group");
  const id = raw.toLowerCase();
  const p = await progressOf(store, id);
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
}

/** `/tasks/{id}`: one task, its hops, and its result or remote error. */
export async function taskPage(store: Store, c: Context<AppEnv>, s: Session): Promise<Response> {
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
}
