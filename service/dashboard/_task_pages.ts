/**
 * The dashboard's task pages: `/groups`, the user's task groups with their progress, and
 * `/tasks`, their tasks, both searched by state, function, endpoint and time and paged;
 * `/groups/{id}`, one group with its tasks (paged), updated live from `/groups/{id}/progress`
 * (JSON), and a button that cancels its unfinished tasks; `/tasks/{id}`, one task with its hops
 * as a chart, its result or remote error, and a button that cancels it while it runs.
 *
 * @module
 */
import type { Context } from "hono";
import { html } from "hono/html";
import { deserialize, isTerminalState } from "../../sdk/protocol/mod.ts";
import { isUuid } from "../http_error.ts";
import type { AppEnv } from "../context.ts";
import type { Session } from "../session.ts";
import type { Store, TaskSummary } from "../store.ts";
import { duration, type Html, page, when } from "./_layout.ts";
import { bucketCounts, bucketLegend, bucketOf, hopChart, hopsOf, progressBar } from "./_charts.ts";
import { pageHref, pager, readSearch, type Search, searchForm } from "./_search.ts";
import {
  actionForm,
  badge,
  doneNotice,
  GROUP_TASKS_SHOWN,
  groupRows,
  groupTasks,
  notFound,
  progressOf,
  remoteError,
  text,
} from "./_views.ts";

/** Task groups on a page of `/groups`. */
const GROUPS_SHOWN = 50;

/** Tasks on a page of `/tasks`. */
const TASKS_SHOWN = 100;

/** Names of the user's functions and endpoints, for lists and the search form. */
async function namesOf(store: Store, s: Session) {
  const [fns, eps] = await Promise.all([
    store.listFunctions(s.user.id, 500),
    store.listEndpoints(s.user.id),
  ]);
  return {
    fns,
    eps,
    fnName: new Map(fns.map((f) => [f.id, f.name || "(anonymous)"])),
    epName: new Map(eps.map((e) => [e.id, e.name])),
  };
}

/** A 400 page for a search whose filters could not be read, with the form to fix them. */
function badSearch(s: Session, title: string, nav: "groups" | "tasks", form: Html) {
  return page({ title, user: s.user.name, csrf: s.csrf, nav, status: 400, body: form });
}

async function ownsGroup(store: Store, id: string, s: Session): Promise<boolean> {
  return isUuid(id) && await store.taskGroupOwner(id.toLowerCase()) === s.user.id;
}

/** `/groups`: the user's task groups that match the search, newest first, a page at a time. */
export async function groupsPage(store: Store, c: Context<AppEnv>, s: Session): Promise<Response> {
  const search = readSearch(new URL(c.req.url));
  const names = await namesOf(store, s);
  const form = searchForm("/groups", search, names.fns, names.eps);
  if (search.errors.length > 0) return badSearch(s, "Task groups", "groups", form);
  const { items: groups, total } = await store.searchTaskGroups(s.user.id, search.filter, {
    limit: GROUPS_SHOWN,
    offset: (search.page - 1) * GROUPS_SHOWN,
  });
  const running = groups.some((g) => {
    const b = bucketCounts(g.counts);
    return b.success + b.failed < g.total;
  });
  return await page({
    title: "Task groups",
    user: s.user.name,
    csrf: s.csrf,
    nav: "groups",
    body: html`${form}
      ${pager("/groups", search, GROUPS_SHOWN, total)}
      ${
      groups.length === 0 ? html`<p class="muted">No task groups match.</p>` : html`
        <div class="table-wrap" ${running ? html`data-refresh="3"` : ""}>
          <table>
            <caption class="muted">
              Newest first${running ? "; while one runs, the list refreshes every 3 s" : ""}.
            </caption>
            ${groupRows(groups)}
          </table>
        </div>
      `
    }`,
  });
}

/** A table of tasks; `withGroup` adds their group and submit time (the list of all tasks). */
function taskTable(
  tasks: readonly TaskSummary[],
  names: { fnName: Map<string, string>; epName: Map<string, string> },
  withGroup: boolean,
): Html {
  return html`
    <div class="table-wrap">
      <table>
        ${withGroup ? html`<caption class="muted">Newest first.</caption>` : ""}
        <thead>
          <tr>
            <th scope="col">Task</th>
            <th scope="col">Status</th>
            <th scope="col">Function</th>
            <th scope="col" class="hide-narrow">Endpoint</th>
            ${withGroup
              ? html`
                <th scope="col" class="hide-narrow">Group</th>
                <th scope="col" class="hide-narrow">Submitted</th>
              `
              : ""}
            <th scope="col" class="hide-narrow num">Took</th>
          </tr>
        </thead>
        <tbody>${taskRows(tasks, names, withGroup)}</tbody>
      </table>
    </div>
  `;
}

/** The rows of a table of tasks. */
function taskRows(
  tasks: readonly TaskSummary[],
  names: { fnName: Map<string, string>; epName: Map<string, string> },
  withGroup: boolean,
): Html {
  return html`${
    tasks.map((t) =>
      html`
        <tr>
          <td><a href="/tasks/${t.id}" class="mono">${t.id}</a></td>
          <td><span class="badge s-${bucketOf(t.status)}" data-task-status="${t.id}">${t
            .status}</span></td>
          <td>${names.fnName.get(t.functionId) ?? t.functionId}</td>
          <td class="hide-narrow"><a href="/endpoints/${t.endpointId}">${names.epName.get(
            t.endpointId,
          ) ?? t.endpointId}</a></td>
          ${withGroup
            ? html`
              <td class="hide-narrow"><a href="/groups/${t.groupId}" class="mono">${t.groupId
                .slice(0, 8)}</a></td>
              <td class="hide-narrow">${when(t.createdAt)}</td>
            `
            : ""}
          <td class="hide-narrow num" data-task-took="${t.id}">${t.completionT
            ? duration((t.completionT - t.createdAt) * 1000)
            : "—"}</td>
        </tr>
      `
    )
  }`;
}

/** `/tasks`: the user's tasks that match the search, newest first, a page at a time. */
export async function tasksPage(store: Store, c: Context<AppEnv>, s: Session): Promise<Response> {
  const search = readSearch(new URL(c.req.url));
  const names = await namesOf(store, s);
  const form = searchForm("/tasks", search, names.fns, names.eps);
  if (search.errors.length > 0) return badSearch(s, "Tasks", "tasks", form);
  const { items, total } = await store.searchTasks(s.user.id, search.filter, {
    limit: TASKS_SHOWN,
    offset: (search.page - 1) * TASKS_SHOWN,
  });
  return await page({
    title: "Tasks",
    user: s.user.name,
    csrf: s.csrf,
    nav: "tasks",
    body: html`${form}
      ${pager("/tasks", search, TASKS_SHOWN, total)}
      ${
      items.length === 0 ? html`<p class="muted">No tasks match.</p>` : html`
        ${taskTable(items, names, true)}
      `
    }`,
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
  const offset = (groupSearch(c).page - 1) * GROUP_TASKS_SHOWN;
  return c.json(await progressOf(store, id.toLowerCase(), offset), 200, {
    "cache-control": "no-store",
  });
}

/** `/groups/{id}`: one task group and its tasks. */
export async function groupPage(store: Store, c: Context<AppEnv>, s: Session): Promise<Response> {
  const raw = c.req.param("id") ?? "";
  if (!await ownsGroup(store, raw, s)) return notFound(s, "task group");
  const id = raw.toLowerCase();
  const search = groupSearch(c);
  const offset = (search.page - 1) * GROUP_TASKS_SHOWN;
  const [p, tasks, names] = await Promise.all([
    progressOf(store, id, offset),
    groupTasks(store, id, offset),
    namesOf(store, s),
  ]);
  const path = `/groups/${id}`;
  return await page({
    title: `Task group ${id}`,
    user: s.user.name,
    csrf: s.csrf,
    nav: "groups",
    body: html`
      ${doneNotice(c)}
            <section data-poll="${pageHref(`${path}/progress`, search, search.page)}"
        data-done="${String(p.done)}" aria-labelledby="progress-h">
            <h2 id="progress-h">Progress: <span data-percent aria-live="polite">${p
              .percent} %</span> of
            <span data-total>${p.total}</span> tasks</h2>
            ${progressBar(p.counts, p.total, "Tasks by state")}
            ${bucketLegend(p.counts)}
            </section>
            ${p.done
              ? ""
              : html`<div class="actions">${
                actionForm(`${path}/cancel`, s.csrf, "Cancel unfinished tasks", { danger: true })
              }</div>`}
            <h2>Tasks</h2>
            ${p.total > GROUP_TASKS_SHOWN ? pager(path, search, GROUP_TASKS_SHOWN, p.total) : ""}
            ${taskTable(tasks, names, false)}
    `,
  });
}

/** Only the page number counts on a group's page (its tasks are not filtered). */
function groupSearch(c: Context<AppEnv>): Search {
  const s = readSearch(new URL(c.req.url));
  return {
    form: { state: "", fn: "", ep: "", from: "", to: "" },
    filter: {},
    page: s.page,
    errors: [],
  };
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
    body: html`${doneNotice(c)}<div ${terminal ? "" : html`data-refresh="2"`}>
${
      terminal
        ? ""
        : html`<div class="actions">${
          actionForm(`/tasks/${t.id}/cancel`, s.csrf, "Cancel task", { danger: true })
        }</div>`
    }
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
