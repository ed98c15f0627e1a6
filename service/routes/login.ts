/**
 * Signing in and out of the dashboard, and approving a device login, on the service's own pages.
 *
 * - `GET /login` shows the sign-in form (name, password), or for a signed-in user the approval
 *   of a device code (`?code=...`, the address the device flow prints).
 * - `POST /login` signs in (name and password, under the {@linkcode SignInGuard}'s limits),
 *   starting a session; with a `user_code` it approves or denies that code in the same step.
 *   A signed-in user approves a code with the session alone.
 * - `POST /logout` ends the session in the store.
 *
 * Every form carries a CSRF token ({@linkcode Sessions.checkForm}). A program that posts the
 * sign-in form itself (no cookies, no browser headers: a password in hand, nothing a forged
 * cross-site form could use) needs none.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { html } from "hono/html";
import { verifyPassword } from "../auth.ts";
import { HttpError } from "../http_error.ts";
import type { AppDeps, AppEnv } from "../context.ts";
import { type Html, page } from "../dashboard/_layout.ts";
import { type Session, type Sessions, withCookies } from "../session.ts";
import type { SignInGuard } from "../sign_in_guard.ts";

/** What the sign-in pages need besides the store. */
export interface WebDeps {
  sessions: Sessions;
  guard: SignInGuard;
}

/** Where to go after signing in: a path on this site, else the dashboard. */
export function safeNext(next: string | null | undefined): string {
  return next && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) ? next : "/";
}

// Verifying against a made-up hash takes as long as a real check, so a missing account cannot be
// told from a wrong password by the time the answer takes.
const NO_SUCH_USER = "pbkdf2-sha256$310000$AAAAAAAAAAAAAAAAAAAAAA$" +
  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

function message(text: string, kind: "error" | "notice" = "error"): Html {
  return html`<p class="${kind}" role="${kind === "error" ? "alert" : "status"}">${text}</p>`;
}

function signInForm(o: {
  csrf: string;
  code: string;
  next: string;
  username?: string;
  note?: Html;
}): Html {
  const device = o.code !== "";
  return html`${o.note ?? ""}
${
    device
      ? html`<p>A program asks to act as you on this funcX service. Check that the code below
matches the one it printed, then sign in to approve it.</p>`
      : html`<p>Sign in to see your endpoints, task groups and functions.</p>`
  }
<form method="post" action="/login" class="stack">
<input type="hidden" name="csrf" value="${o.csrf}">
<input type="hidden" name="next" value="${o.next}">
${
    device
      ? html`<label for="user_code">Code</label>
<input id="user_code" name="user_code" value="${o.code}" required autocomplete="off"
  class="mono">`
      : ""
  }
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required value="${
    o.username ?? ""
  }" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<div class="actions">
${
    device
      ? html`<button class="primary" name="decision" value="approve">Sign in and approve</button>
<button name="decision" value="deny">Deny</button>`
      : html`<button class="primary" type="submit">Sign in</button>`
  }
</div>
</form>`;
}

function approveForm(session: Session, code: string, note?: Html): Html {
  return html`
    ${note ?? ""}
    <p>A program asks to act as <strong>${session.user.name}</strong> on this funcX service. Check
    that the code matches the one it printed.</p>
    <form method="post" action="/login" class="stack">
      <input type="hidden" name="csrf" value="${session.csrf}">
      <label for="user_code">Code</label>
      <input id="user_code" name="user_code" value="${code}" required autocomplete="off"
        class="mono"
        autofocus>
      <div class="actions">
        <button class="primary" name="decision" value="approve">Approve</button>
        <button name="decision" value="deny">Deny</button>
      </div>
    </form>
    <p class="muted">Not you? Sign out above, then sign in as yourself.</p>
  `;
}

/** Sign-in, device approval and sign-out routes, mounted at `/`. */
export function loginRoutes(deps: AppDeps, web: WebDeps): Hono<AppEnv> {
  const { sessions, guard } = web;

  const signInPage = async (
    c: Context,
    o: { code: string; next: string; username?: string; note?: Html; status?: number },
    headers: Record<string, string> = {},
  ) =>
    withCookies(
      c,
      await page({
        title: o.code ? "Approve a device login" : "Sign in",
        body: signInForm({ ...o, csrf: sessions.formToken(c) }),
        status: o.status ?? 200,
        headers,
      }),
    );

  const approvePage = async (c: Context, s: Session, code: string, note?: Html, status = 200) =>
    withCookies(
      c,
      await page({
        title: "Approve a device login",
        body: approveForm(s, code, note),
        user: s.user.name,
        csrf: s.csrf,
        status,
      }),
    );

  /** Approves or denies `code` as `userId`; a page either way. */
  const decide = async (
    c: Context,
    code: string,
    decision: string,
    userId: string,
    session: Session | undefined,
  ) => {
    const rec = await deps.store.deviceCodeByUserCode(code);
    if (!rec || rec.status !== "pending" || rec.expiresAt <= Date.now() / 1000) {
      const note = message(`The code "${code}" is unknown or expired: start the login again.`);
      return session
        ? approvePage(c, session, code, note, 400)
        : signInPage(c, { code, next: "/", note, status: 400 });
    }
    const approve = decision !== "deny";
    await deps.store.decideDeviceCode(rec.hash, approve ? "approved" : "denied", userId);
    return withCookies(
      c,
      await page({
        title: approve ? "Approved" : "Denied",
        body: html`
          <p>${approve
            ? "You can return to your terminal: the program is logged in."
            : "The program will not be logged in."}</p>
          <p><a href="/">Open the dashboard</a></p>
        `,
        ...(session ? { user: session.user.name, csrf: session.csrf } : {}),
      }),
    );
  };

  return new Hono<AppEnv>()
    .get("/login", async (c) => {
      const code = (c.req.query("code") ?? "").trim().toUpperCase();
      const next = safeNext(c.req.query("next"));
      const session = await sessions.current(c);
      if (session && !code && c.req.query("next")) return c.redirect(next, 303);
      if (session) return approvePage(c, session, code);
      return signInPage(c, { code, next });
    })
    .post("/login", async (c) => {
      const form = new URLSearchParams(await c.req.text());
      const session = await sessions.current(c);
      const browser = sessions.fromBrowser(c);
      const code = (form.get("user_code") ?? "").trim().toUpperCase();
      const next = safeNext(form.get("next"));
      try {
        if (browser) sessions.checkForm(c, form, session);
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        return signInPage(c, { code, next, note: message(`${err.message}.`), status: 403 });
      }
      const decision = form.get("decision") ?? "approve";
      const username = form.get("username") ?? "";
      const password = form.get("password");

      if (password === null && session && code) {
        return decide(c, code, decision, session.user.id, session);
      }
      if (code) {
        // A code that cannot be approved is said before the password is checked.
        const rec = await deps.store.deviceCodeByUserCode(code);
        if (!rec || rec.status !== "pending" || rec.expiresAt <= Date.now() / 1000) {
          const note = message(`The code "${code}" is unknown or expired: start the login again.`);
          return signInPage(c, { code, next, username, note, status: 400 });
        }
      }
      if (!username || !password) {
        const note = message("Enter your user name and password.");
        return signInPage(c, { code, next, username, note, status: 400 });
      }
      const address = sessions.address(c);
      let ok: boolean;
      let user: Awaited<ReturnType<typeof deps.store.userByName>>;
      try {
        ok = await guard.attempt("user", username, address, async () => {
          user = await deps.store.userByName(username);
          const good = await verifyPassword(password, user?.passwordHash ?? NO_SUCH_USER);
          return good && Boolean(user?.passwordHash);
        });
      } catch (err) {
        if (!(err instanceof HttpError) || err.status !== 429) throw err;
        const note = message(`${err.message}.`);
        return signInPage(c, { code, next, username, note, status: 429 }, {
          "retry-after": String(err.errorArgs[0]),
        });
      }
      if (!ok || !user) {
        const note = message("Wrong user name or password.");
        return signInPage(c, { code, next, username, note, status: 401 });
      }
      if (browser) await sessions.start(c, user);
      if (code) return decide(c, code, decision, user.id, undefined);
      return c.redirect(next, 303);
    })
    .post("/logout", async (c) => {
      const form = new URLSearchParams(await c.req.text());
      const session = await sessions.current(c);
      try {
        sessions.checkForm(c, form, session);
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        return await page({
          title: "Not signed out",
          body: html`${message(`${err.message}.`)}<p><a href="/">Back to the dashboard</a></p>`,
          status: 403,
          ...(session ? { user: session.user.name, csrf: session.csrf } : {}),
        });
      }
      await sessions.end(c, session);
      return c.redirect("/login", 303);
    });
}
