/**
 * The dashboard's endpoint pages: `/`, the user's endpoints with their status, workers, blocks and
 * tasks waiting (and their recent task groups); `/endpoints/{id}`, one endpoint with its online
 * history.
 *
 * @module
 */
import type { Context } from "hono";
import { html } from "hono/html";
import { isUuid } from "../http_error.ts";
import type { AppEnv } from "../context.ts";
import { type Session, withCookies } from "../session.ts";
import type { Store } from "../store.ts";
import { ago, page, when } from "./_layout.ts";
import { uptimeStrip } from "./_charts.ts";
import {
  actionForm,
  badge,
  blocks,
  doneNotice,
  endpointViews,
  groupRows,
  notFound,
  workers,
} from "./_views.ts";
import { liveChart, sample } from "./_live_chart.ts";
import { LOCK_CHOICES } from "./_actions.ts";

/** Seconds of online history shown for an endpoint. */
const HISTORY_S = 3600;

/** `/`: the user's endpoints and recent task groups. */
export async function endpointsPage(
  store: Store,
  c: Context<AppEnv>,
  s: Session,
): Promise<Response> {
  const now = Date.now() / 1000;
  const views = await endpointViews(store, await store.listEndpoints(s.user.id));
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
      body: html`${doneNotice(c)}<div data-refresh="5">
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
${liveChart(sample())}
</div>`,
    }),
  );
}

/** `/endpoints/{id}`: one endpoint, its status and its last hour online. */
export async function endpointPage(
  store: Store,
  c: Context<AppEnv>,
  s: Session,
): Promise<Response> {
  const id = c.req.param("id") ?? "";
  const ep = isUuid(id) ? await store.getEndpoint(id.toLowerCase()) : undefined;
  if (!ep || ep.ownerId !== s.user.id || ep.deleted) return notFound(s, "endpoint");
  const now = Date.now() / 1000;
  const [v] = await endpointViews(store, [ep]);
  const uptime = await store.endpointUptime(ep.id, now - HISTORY_S);
  const w = workers(v!.state);
  const b = blocks(v!.state);
  const providerError = v!.state["provider_error"];
  return await page({
    title: ep.name,
    user: s.user.name,
    csrf: s.csrf,
    nav: "endpoints",
    body: html`${doneNotice(c)}<div data-refresh="5">
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
</div>
<h2>Actions</h2>
<div class="actions">
${
      v!.status === "locked"
        ? actionForm(`/endpoints/${ep.id}/unlock`, s.csrf, "Unlock")
        : actionForm(`/endpoints/${ep.id}/lock`, s.csrf, "Stop and lock", {
          fields: html`<label>for <select name="seconds">${
            LOCK_CHOICES.map(([n, label]) =>
              html`
                <option value="${n}" ${n === 3600
                  ? html`
                    selected
                  `
                  : ""}>${label}</option>
              `
            )
          }</select></label>`,
        })
    }
</div>
<details class="confirm">
<summary>Delete this endpoint…</summary>
<p>Deleting stops it, drops the tasks still queued for it, and its id can never register
again. This cannot be undone.</p>
${actionForm(`/endpoints/${ep.id}/delete`, s.csrf, "Delete endpoint", { danger: true })}
</details>`,
  });
}
