/**
 * The dashboard's `/functions` page: the functions the user registered, with their source.
 *
 * @module
 */
import type { Context } from "hono";
import { html } from "hono/html";
import type { AppEnv } from "../context.ts";
import type { Session } from "../session.ts";
import type { Store } from "../store.ts";
import { page, when } from "./_layout.ts";
import { functionSource, text } from "./_views.ts";

/** `/functions`: the user's functions. */
export async function functionsPage(
  store: Store,
  _c: Context<AppEnv>,
  s: Session,
): Promise<Response> {
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
}
