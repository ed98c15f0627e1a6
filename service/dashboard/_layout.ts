/**
 * The page shell of the dashboard and the sign-in page: one HTML document per page, rendered on
 * the server with Hono's `html` template (values are escaped), one stylesheet and one small
 * script served from this origin (`/assets/...`), and headers that forbid everything else
 * (a strict Content-Security-Policy: nothing is fetched from another origin).
 *
 * @module
 */
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

/** What a page renders: HTML text, possibly still being built. */
export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** Headers of every dashboard page. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; " +
    "base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
});

/** Options of {@linkcode page}. */
export interface PageOptions {
  title: string;
  body: Html;
  /** The signed-in user's name; none: no navigation. @default none */
  user?: string;
  /** The session's CSRF token, for the sign-out form. @default none */
  csrf?: string;
  /** Which navigation entry is current. @default none */
  nav?: "endpoints" | "groups" | "tasks" | "functions";
  /** HTTP status. @default 200 */
  status?: number;
  /** Extra headers. @default none */
  headers?: Record<string, string>;
}

const NAV = [
  ["endpoints", "/", "Endpoints"],
  ["groups", "/groups", "Task groups"],
  ["tasks", "/tasks", "Tasks"],
  ["functions", "/functions", "Functions"],
] as const;

/** Renders a whole page as a response. */
export async function page(o: PageOptions): Promise<Response> {
  const nav = o.user === undefined ? "" : html`<nav aria-label="Main">
  <a class="brand" href="/">funcX</a>
  <ul>${
    NAV.map(([key, href, label]) =>
      html`<li><a href="${href}"${
        key === o.nav
          ? html`
            aria-current="page"
          `
          : ""
      }>${label}</a></li>`
    )
  }</ul>
  <form method="post" action="/logout" class="signout">
    <span class="who">${o.user}</span>
    <input type="hidden" name="csrf" value="${o.csrf ?? ""}">
    <button type="submit">Sign out</button>
  </form>
</nav>`;
  const doc = await html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>${o.title} · funcX</title>
        <link rel="stylesheet" href="/assets/dashboard.css">
        <script src="/assets/dashboard.js" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header>${nav}</header>
        <main id="main" tabindex="-1">
    <h1>${o.title}</h1>
    ${o.body}
        </main>
      </body>
    </html>
  `;
  return new Response(String(doc), {
    status: o.status ?? 200,
    headers: { ...PAGE_HEADERS, ...(o.headers ?? {}) },
  });
}

/** The stylesheet of every page. */
export const STYLESHEET = `
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--panel:#f6f8fa;--accent:#0b5cad;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--wait:#8c959f;--run:#0969da}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,summary:focus-visible,main:focus-visible{
outline:3px solid #f0b400;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:.5rem;top:.5rem;background:#fff;padding:.3rem}
header{background:#24292f;color:#fff}
nav{max-width:1200px;margin:0 auto;display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem;
padding:.5rem 1rem}
nav a{color:#fff;text-decoration:none;padding:.3rem .2rem;border-bottom:2px solid transparent}
nav a[aria-current=page]{border-bottom-color:#f0b400}
nav .brand{font-weight:700;font-size:1.15rem;margin-right:.5rem}
nav ul{display:flex;flex-wrap:wrap;gap:.2rem 1rem;list-style:none;margin:0;padding:0;flex:1}
.signout{display:flex;align-items:center;gap:.6rem;margin:0}
.signout .who{opacity:.85}
.signout button{background:transparent;color:#fff;border:1px solid #8c959f}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.4rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.6rem 0 .6rem}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--panel);font-weight:600;white-space:nowrap}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
.id{overflow-wrap:anywhere;color:var(--muted)}
pre{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.7rem;
overflow:auto;max-height:28rem;white-space:pre-wrap;overflow-wrap:anywhere}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.85rem;
font-weight:600;border:1px solid currentColor;white-space:nowrap}
.s-online,.s-success{color:var(--ok)}.s-offline,.s-waiting{color:var(--muted)}
.s-failed{color:var(--bad)}.s-locked{color:var(--warn)}.s-running{color:var(--run)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0 0 1.2rem}
figure{margin:0 0 1rem}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:1rem}
.card{border:1px solid var(--line);border-radius:6px;padding:.8rem 1rem;background:var(--panel)}
.card h2{margin-top:0}
.muted{color:var(--muted)}
.error{border-left:4px solid var(--bad);background:#ffebe9;padding:.6rem .8rem;border-radius:4px}
.notice{border-left:4px solid var(--accent);background:#ddf4ff;padding:.6rem .8rem;border-radius:4px}
svg{max-width:100%;height:auto;display:block}
svg text{font:12px system-ui,sans-serif;fill:var(--fg)}
.legend{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;margin:.4rem 0;padding:0;list-style:none}
.legend li::before{content:"";display:inline-block;width:.8rem;height:.8rem;margin-right:.35rem;
vertical-align:-1px;border-radius:2px;background:var(--c)}
.l-waiting{--c:var(--wait)}.l-running{--c:var(--run)}.l-success{--c:var(--ok)}.l-failed{--c:var(--bad)}
.l-online{--c:var(--ok)}.l-offline{--c:#d0d7de}
form.stack{max-width:26rem}
form.stack label{display:block;margin:.7rem 0 .2rem;font-weight:600}
form.stack input{width:100%;padding:.5rem;font-size:1rem;border:1px solid var(--line);border-radius:6px}
button{font-size:1rem;padding:.45rem 1.1rem;border-radius:6px;border:1px solid var(--line);
background:var(--panel);color:var(--fg);cursor:pointer}
button.primary{background:#1f883d;border-color:#1a7f37;color:#fff}
.actions{display:flex;gap:.6rem;margin-top:1rem;flex-wrap:wrap;align-items:center}
form.action{display:inline-flex;gap:.5rem;align-items:center;margin:0}
button.danger{background:#fff;border-color:var(--bad);color:var(--bad)}
button.danger:hover{background:#ffebe9}
form.filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:flex-end;margin:0 0 1rem;
padding:.8rem;border:1px solid var(--line);border-radius:6px;background:var(--panel)}
form.filters label{display:flex;flex-direction:column;font-weight:600;font-size:.9rem;gap:.2rem}
form.filters select,form.filters input{font-size:.95rem;padding:.35rem;border:1px solid var(--line);
border-radius:6px;background:#fff;max-width:16rem}
form.filters .error{flex-basis:100%}form.filters .actions{margin-top:0}
.pager{display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center;margin:.6rem 0}
details.confirm{margin-top:.6rem}details.confirm summary{cursor:pointer;color:var(--bad)}
.live figure{margin:0}.live .cards{grid-template-columns:repeat(auto-fit,minmax(18rem,1fr))}
@media (max-width:640px){body{font-size:15px}main{padding:.7rem}
nav ul{order:3;flex-basis:100%}nav .signout{margin-left:auto}
th,td{padding:.35rem .4rem}.hide-narrow{display:none}dl.facts{grid-template-columns:1fr}
dl.facts dt{margin-top:.4rem}}
`;

/**
 * The one script: pages mark what it updates. `data-poll` on an element polls that JSON address
 * every second and writes the counts of a task group into the page until the group is done;
 * `data-refresh` on an element refreshes it in place every that many seconds.
 */
export const SCRIPT = `"use strict";
(function () {
  function text(sel, value) {
    document.querySelectorAll(sel).forEach(function (el) { el.textContent = String(value); });
  }
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var timer = 0;
    function once() {
      fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (p) {
          ["waiting", "running", "success", "failed"].forEach(function (s) {
            text('[data-count="' + s + '"]', p.counts[s]);
            var bar = el.querySelector('[data-bar="' + s + '"]');
            if (bar) {
              bar.setAttribute("x", String(p.bars[s].x));
              bar.setAttribute("width", String(p.bars[s].width));
            }
          });
          text("[data-percent]", p.percent + " %");
          text("[data-total]", p.total);
          (p.tasks || []).forEach(function (t) {
            var cell = document.querySelector('[data-task-status="' + t.id + '"]');
            if (cell && cell.textContent !== t.status) {
              cell.textContent = t.status;
              cell.className = "badge s-" + t.bucket;
            }
            var took = document.querySelector('[data-task-took="' + t.id + '"]');
            if (took && t.took) took.textContent = t.took;
          });
          if (p.done) el.setAttribute("data-done", "true");
          else timer = setTimeout(once, 1000);
        })
        .catch(function () { timer = setTimeout(once, 3000); });
    }
    if (el.getAttribute("data-done") !== "true") once();
    return timer;
  }
  document.querySelectorAll("[data-poll]").forEach(poll);
  // Refreshes a region in place from a fresh copy of the page, so scrolling stays where it is;
  // skipped while the keyboard focus is inside it, so nobody loses their place.
  function refresh(el) {
    var seconds = Number(el.getAttribute("data-refresh"));
    setTimeout(function again() {
      var focused = document.activeElement;
      if (document.hidden || (focused && focused !== document.body && el.contains(focused))) {
        setTimeout(again, 1000 * seconds);
        return;
      }
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (text) {
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.querySelector("[data-refresh]");
          if (!fresh) { location.reload(); return; }
          el.innerHTML = fresh.innerHTML;
          if (fresh.getAttribute("data-refresh")) setTimeout(again, 1000 * seconds);
        })
        .catch(function () { setTimeout(again, 1000 * seconds); });
    }, 1000 * seconds);
  }
  document.querySelectorAll("[data-refresh]").forEach(refresh);
})();
`;

/** A time as UTC `YYYY-MM-DD HH:MM:SS`. */
export function when(epochS: number | null | undefined): string {
  if (!epochS) return "—";
  return new Date(epochS * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

/** How long ago `epochS` was, coarsely (`12 s ago`, `5 min ago`). */
export function ago(epochS: number | null | undefined, now: number): string {
  if (!epochS) return "never";
  const d = Math.max(0, now - epochS);
  if (d < 90) return `${Math.round(d)} s ago`;
  if (d < 5400) return `${Math.round(d / 60)} min ago`;
  if (d < 172800) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} days ago`;
}

/** A duration in ms, readably (`0.42 ms`, `12.3 ms`, `4.1 s`). */
export function duration(ms: number): string {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 10_000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}
