/**
 * The service's own login page, where a person approves a device authorization: `GET /login`
 * shows a form (user code, user name, password), `POST /login` checks the password and approves
 * or denies the code. Plain HTML, no scripts.
 *
 * @module
 */
import { Hono } from "hono";
import { verifyPassword } from "../auth.ts";
import type { AppDeps, AppEnv } from "../app.ts";

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string, status = 200): Response {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>${escapeHtml(title)} · funcX</title>
<style>body{font:16px system-ui;max-width:28em;margin:3em auto}label{display:block;margin:.6em 0}
input{width:100%;padding:.4em}button{margin:.8em .4em 0 0;padding:.4em 1em}</style></head>
<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
  return new Response(html, { status, headers: { "content-type": "text/html; charset=utf-8" } });
}

function form(code: string, message = ""): string {
  return `${message ? `<p><strong>${escapeHtml(message)}</strong></p>` : ""}
<p>A program asks to act as you on this funcX service. Check that the code matches the one it
printed, then sign in to approve it.</p>
<form method="post" action="/login">
<label>Code <input name="user_code" value="${escapeHtml(code)}" required></label>
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label>
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button>
</form>`;
}

/** Login page routes. */
export function loginRoutes(deps: AppDeps): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .get("/", (c) => page("Sign in", form(c.req.query("code") ?? "")))
    .post("/", async (c) => {
      const f = new URLSearchParams(await c.req.text());
      const code = (f.get("user_code") ?? "").trim().toUpperCase();
      const rec = await deps.store.deviceCodeByUserCode(code);
      if (!rec || rec.status !== "pending" || rec.expiresAt <= Date.now() / 1000) {
        return page("Sign in", form(code, "That code is unknown or expired."), 400);
      }
      const user = await deps.store.userByName(f.get("username") ?? "");
      const ok = user?.passwordHash &&
        await verifyPassword(f.get("password") ?? "", user.passwordHash);
      if (!user || !ok) return page("Sign in", form(code, "Wrong user name or password."), 401);
      const approve = f.get("decision") !== "deny";
      await deps.store.decideDeviceCode(rec.hash, approve ? "approved" : "denied", user.id);
      return page(
        approve ? "Approved" : "Denied",
        `<p>${
          approve ? "You can return to your terminal." : "The program will not be logged in."
        }</p>`,
      );
    });
}
