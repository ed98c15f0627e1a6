/**
 * What the dashboard's pages share: a signed-in page handler's shape, the "not found" page,
 * formatting of values, results and remote errors, the view of an endpoint's status from its last
 * report, and the table and progress of task groups. The pages (`_endpoint_pages.ts`,
 * `_task_pages.ts`, `_functions_page.ts`) are built from these; `routes/dashboard.ts` mounts them.
 *
 * @module
 */
import type { Context } from "hono";
import { html } from "hono/html";
import { deserialize, deserializeFunction } from "../../sdk/protocol/mod.ts";
import type { AppEnv } from "../context.ts";
import type { Session } from "../session.ts";
import type {
  EndpointRecord,
  FunctionRecord,
  Store,
  TaskGroupSummary,
  TaskSummary,
} from "../store.ts";
import { duration, type Html, page, when } from "./_layout.ts";
import { barLayout, bucketCounts, bucketOf, percentDone, progressBar } from "./_charts.ts";

/** What a redirect after an action tells the page to say (`?done=`). */
export const DONE_NOTICES: Readonly<Record<string, string>> = {
  "task-cancelled": "The task was cancelled.",
  "task-finished": "The task had already finished; nothing was cancelled.",
  "group-cancelled": "The group's unfinished tasks were cancelled.",
  "endpoint-locked":
    "The endpoint was told to stop and is locked: it cannot start until the lock ends.",
  "endpoint-unlocked": "The lock is lifted: the endpoint can start again.",
  "endpoint-deleted": "The endpoint was deleted.",
};

/** Tasks listed on a page of a group's tasks and in its progress. */
export const GROUP_TASKS_SHOWN = 500;

/** What the action that redirected here did (`?done=`), as a notice; nothing otherwise. */
export function doneNotice(c: Context<AppEnv>): Html | "" {
  const said = DONE_NOTICES[c.req.query("done") ?? ""];
  return said ? html`<p class="notice" role="status">${said}</p>` : "";
}

/** A form of one button that posts an action with the session's CSRF token. */
export function actionForm(
  action: string,
  csrf: string,
  label: string,
  options: { danger?: boolean; fields?: Html } = {},
): Html {
  return html`<form method="post" action="${action}" class="action">
    <input type="hidden" name="csrf" value="${csrf}">
    ${options.fields ?? ""}
    <button type="submit"${
    options.danger
      ? html`
        class="danger"
      `
      : ""
  }>${label}</button>
  </form>`;
}

/** A page for a signed-in user, read from the store. */
export type PageHandler = (store: Store, c: Context<AppEnv>, s: Session) => Promise<Response>;

/** The page for an id that is not one of the user's own, whatever it is. */
export function notFound(s: Session, what: string): Promise<Response> {
  return page({
    title: "Not found",
    user: s.user.name,
    csrf: s.csrf,
    status: 404,
    body: html`
      <p>You have no ${what} with that id.</p>
      <p><a href="/">Back to the dashboard</a></p>
    `,
  });
}

/** A value as text for a page, cut at `max` characters. */
export function text(v: unknown, max = 4000): string {
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
export function remoteError(
  exception: string | null,
): { name: string; message: string; stack: string } {
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

/** The source of a registered function, or its stored form when it cannot be decoded. */
export function functionSource(fn: FunctionRecord): string {
  try {
    return deserializeFunction(fn.code).source;
  } catch {
    return fn.code;
  }
}

/** A status badge, coloured by its bucket. */
export function badge(status: string, bucket: string = status): Html {
  return html`<span class="badge s-${bucket}">${status}</span>`;
}

/** An endpoint's status now, with what its last report said. */
export interface EndpointView {
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

/** Each endpoint's status now, from its last report and the tasks waiting for it. */
export async function endpointViews(
  store: Store,
  eps: EndpointRecord[],
): Promise<EndpointView[]> {
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
}

/** Workers of an endpoint's report, busy and idle. */
export function workers(st: Record<string, unknown>) {
  const total = n(st["total_workers"]);
  const idle = n(st["idle_workers"]);
  return { total, idle, busy: Math.max(0, total - idle), managers: n(st["managers"]) };
}

/** Blocks of an endpoint's report, by state. */
export function blocks(st: Record<string, unknown>) {
  const b = (st["blocks"] ?? {}) as Record<string, unknown>;
  return { pending: n(b["pending"]), running: n(b["running"]), failed: n(b["failed"]) };
}

/** The head and rows of a table of task groups (the overview's and the list's). */
export function groupRows(groups: readonly TaskGroupSummary[]): Html {
  return html`
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
}

function groupRow(g: TaskGroupSummary): Html {
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
}

/** A page of a group's tasks, oldest first, from `offset`. */
export async function groupTasks(
  store: Store,
  groupId: string,
  offset: number,
): Promise<TaskSummary[]> {
  if (offset === 0) return await store.listGroupTasks(groupId, GROUP_TASKS_SHOWN);
  const owner = await store.taskGroupOwner(groupId);
  if (owner === undefined) return [];
  const page = await store.searchTasks(owner, { groupId }, {
    limit: GROUP_TASKS_SHOWN,
    offset,
    oldestFirst: true,
  });
  return page.items;
}

/** A group's progress: counts by bucket, the bar, and a page of its tasks (also as JSON). */
export async function progressOf(store: Store, groupId: string, offset = 0) {
  const g = await store.taskGroupSummary(groupId);
  const counts = bucketCounts(g?.counts ?? {});
  const total = g?.total ?? 0;
  const tasks = await groupTasks(store, groupId, offset);
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
}
