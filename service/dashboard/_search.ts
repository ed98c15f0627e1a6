/**
 * The dashboard's searches: the filters of `/groups` and `/tasks` read from the address (state,
 * function, endpoint, from, to, page), checked, turned into a store {@linkcode TaskFilter}; the
 * form that sets them; and the pager under a list. A filter that cannot be read is named in an
 * error above the form, and the list is not shown.
 *
 * @module
 */
import { html } from "hono/html";
import { TaskState } from "../../sdk/protocol/mod.ts";
import { isUuid } from "../http_error.ts";
import type { EndpointRecord, FunctionRecord, TaskFilter } from "../store.ts";
import type { Html } from "./_layout.ts";
import { type Bucket, bucketOf, BUCKETS } from "./_charts.ts";

/** The stored statuses of a bucket (`waiting` is every state before a worker has the task). */
export function statusesOf(bucket: Bucket): string[] {
  return Object.values(TaskState).filter((s) => bucketOf(s) === bucket);
}

/** A search as the address gave it: the values to show in the form, and the store's filter. */
export interface Search {
  /** The form's values, as typed. */
  form: { state: string; fn: string; ep: string; from: string; to: string };
  filter: TaskFilter;
  /** The page asked for, from 1. */
  page: number;
  /** What could not be read, one sentence per field; empty when all is well. */
  errors: string[];
}

/** `YYYY-MM-DDTHH:MM[:SS]` (a `datetime-local` value, taken as UTC) as epoch seconds. */
function utcSeconds(value: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value)) return undefined;
  const ms = Date.parse(`${value}Z`);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

/** Reads a search from the query of `url`. */
export function readSearch(url: URL): Search {
  const q = (k: string) => (url.searchParams.get(k) ?? "").trim();
  const form = { state: q("state"), fn: q("fn"), ep: q("ep"), from: q("from"), to: q("to") };
  const errors: string[] = [];
  const filter: TaskFilter = {};
  if (form.state) {
    if ((BUCKETS as readonly string[]).includes(form.state)) {
      filter.statuses = statusesOf(form.state as Bucket);
    } else errors.push(`State "${form.state}" is not one of ${BUCKETS.join(", ")}`);
  }
  if (form.fn) {
    if (isUuid(form.fn)) filter.functionId = form.fn.toLowerCase();
    else errors.push(`Function "${form.fn}" is not a function id: pick one from the list`);
  }
  if (form.ep) {
    if (isUuid(form.ep)) filter.endpointId = form.ep.toLowerCase();
    else errors.push(`Endpoint "${form.ep}" is not an endpoint id: pick one from the list`);
  }
  for (const [key, field] of [["from", "since"], ["to", "until"]] as const) {
    if (!form[key]) continue;
    const t = utcSeconds(form[key]);
    if (t === undefined) {
      errors.push(`"${key}" must be a date and time like 2026-01-31T14:05 (UTC)`);
    } else filter[field] = t;
  }
  const rawPage = q("page") || "1";
  const page = /^\d{1,6}$/.test(rawPage) ? Math.max(1, Number(rawPage)) : 0;
  if (page === 0) errors.push(`Page "${rawPage}" is not a page number`);
  return { form, filter, page: page || 1, errors };
}

/** The address of `path` with the search's filters and page `n`. */
export function pageHref(path: string, s: Search, n: number): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(s.form)) if (v) p.set(k, v);
  if (n > 1) p.set("page", String(n));
  const qs = p.toString();
  return qs ? `${path}?${qs}` : path;
}

/** The filter form of a list at `path`. */
export function searchForm(
  path: string,
  s: Search,
  fns: readonly FunctionRecord[],
  eps: readonly EndpointRecord[],
): Html {
  const opt = (value: string, label: string, current: string) =>
    html`
      <option value="${value}" ${value === current
        ? html`
          selected
        `
        : ""}>${label}</option>
    `;
  return html`
    <form method="get" action="${path}" class="filters" role="search" aria-label="Filter">
      ${s.errors.length > 0
        ? html`<div class="error" role="alert">${s.errors.map((e) => html`<p>${e}.</p>`)}</div>`
        : ""}
      <label>State <select name="state">${opt("", "any", s.form.state)}${BUCKETS.map((b) =>
        opt(b, b, s.form.state)
      )}</select></label>
      <label>Function <select name="fn">${opt("", "any", s.form.fn)}${fns.map((f) =>
        opt(f.id, f.name || f.id, s.form.fn)
      )}</select></label>
      <label>Endpoint <select name="ep">${opt("", "any", s.form.ep)}${eps.map((e) =>
        opt(e.id, e.name, s.form.ep)
      )}</select></label>
      <label>From (UTC) <input type="datetime-local" name="from" value="${s.form.from}"></label>
      <label>To (UTC) <input type="datetime-local" name="to" value="${s.form.to}"></label>
      <div class="actions"><button type="submit" class="primary">Search</button>
      <a href="${path}">Clear</a></div>
    </form>
  `;
}

/** "Showing a–b of n" with links to the pages before and after. */
export function pager(path: string, s: Search, pageSize: number, total: number): Html {
  const first = (s.page - 1) * pageSize + 1;
  const last = Math.min(total, s.page * pageSize);
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return html`
    <div class="pager" role="navigation" aria-label="Pages">
      <span data-showing>${total === 0
        ? "None match"
        : `Showing ${first}–${last} of ${total}`}</span>
      ${s.page > 1 ? html`<a rel="prev" href="${pageHref(path, s, s.page - 1)}">Previous</a>` : ""}
      <span class="muted">page ${s.page} of ${pages}</span>
      ${s.page < pages ? html`<a rel="next" href="${pageHref(path, s, s.page + 1)}">Next</a>` : ""}
    </div>
  `;
}
