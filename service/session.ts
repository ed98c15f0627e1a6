/**
 * Dashboard sessions and the defences of its forms. Signing in on `/login` makes a session: a
 * random cookie value (HttpOnly, SameSite=Lax, Secure and `__Host-` named when served over
 * https) whose SHA-256 is kept in the store with the session's CSRF token, so any replica knows
 * it and signing out on one ends it on all. Every state-changing form carries a CSRF token: the
 * session's, or before signing in a random one that must match a cookie (double submit). A POST
 * a browser sends from another site (`Sec-Fetch-Site`, `Origin`) is refused outright.
 *
 * @module
 */
import type { Context } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { timingSafeEqual } from "node:crypto";
import { randomSecret, sha256Hex } from "./auth.ts";
import { HttpError } from "./http_error.ts";
import type { SignInSettings } from "./sign_in_guard.ts";
import type { SessionRecord, Store, UserRecord } from "./store.ts";

/** A signed-in session, as the dashboard sees it. */
export interface Session extends SessionRecord {
  /** SHA-256 of the cookie value: the session's key in the store. */
  hash: string;
}

/** Whether `a` and `b` are the same string, in time that does not depend on where they differ. */
export function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/** Starts, finds and ends sessions; checks the origin and CSRF token of form posts. */
export class Sessions {
  readonly #store: Store;
  readonly #settings: SignInSettings;
  readonly #publicAddress: string | undefined;

  constructor(store: Store, settings: SignInSettings, publicAddress: string | undefined) {
    this.#store = store;
    this.#settings = settings;
    this.#publicAddress = publicAddress;
  }

  /** Whether the request came over https (directly, by the public address, or via a proxy). */
  secure(c: Context): boolean {
    if (new URL(c.req.url).protocol === "https:") return true;
    if (this.#publicAddress?.startsWith("https:")) return true;
    return this.#settings.trustProxy && c.req.header("x-forwarded-proto") === "https";
  }

  /** The client's address: the peer, or the last `X-Forwarded-For` hop behind a proxy. */
  address(c: Context): string {
    if (this.#settings.trustProxy) {
      const hops = (c.req.header("x-forwarded-for") ?? "").split(",").map((h) => h.trim());
      const last = hops.filter(Boolean).at(-1);
      if (last) return last;
    }
    const info = c.env as { remoteAddr?: { hostname?: string } } | undefined;
    return info?.remoteAddr?.hostname ?? "unknown";
  }

  #names(c: Context): { session: string; csrf: string } {
    return this.secure(c)
      ? { session: "__Host-funcx_session", csrf: "__Host-funcx_csrf" }
      : { session: "funcx_session", csrf: "funcx_csrf" };
  }

  #cookieOptions(c: Context, maxAge: number) {
    return {
      path: "/",
      httpOnly: true,
      secure: this.secure(c),
      sameSite: "Lax" as const,
      maxAge,
    };
  }

  /** Signs `user` in: stores a session and sets its cookie. */
  async start(c: Context, user: UserRecord): Promise<void> {
    const value = randomSecret();
    const ttl = this.#settings.sessionTtlS;
    await this.#store.addSession(
      sha256Hex(value),
      user.id,
      randomSecret(),
      Date.now() / 1000 + ttl,
    );
    setCookie(c, this.#names(c).session, value, this.#cookieOptions(c, ttl));
  }

  /** The request's session, if it has a live one. */
  async current(c: Context): Promise<Session | undefined> {
    const value = getCookie(c, this.#names(c).session);
    if (!value) return undefined;
    const hash = sha256Hex(value);
    const rec = await this.#store.sessionFor(hash, Date.now() / 1000);
    return rec ? { ...rec, hash } : undefined;
  }

  /** Ends `session` in the store and clears its cookie. */
  async end(c: Context, session: Session | undefined): Promise<void> {
    if (session) await this.#store.deleteSession(session.hash);
    setCookie(c, this.#names(c).session, "", this.#cookieOptions(c, 0));
  }

  /**
   * The CSRF token for a form before signing in: the one in the request's cookie, or a new one
   * set as a cookie now.
   */
  formToken(c: Context): string {
    const name = this.#names(c).csrf;
    const have = getCookie(c, name);
    if (have && /^[A-Za-z0-9_-]{43}$/.test(have)) return have;
    const token = randomSecret();
    setCookie(c, name, token, this.#cookieOptions(c, this.#settings.sessionTtlS));
    return token;
  }

  /** Whether a browser sent the request (it carries cookies, or headers only browsers send). */
  fromBrowser(c: Context): boolean {
    return Boolean(
      c.req.header("cookie") || c.req.header("origin") || c.req.header("sec-fetch-site") ||
        c.req.header("sec-fetch-mode"),
    );
  }

  /**
   * Refuses (403 `csrf_failed`) a POST a browser sent from another site, and one whose form
   * token is neither `session`'s token nor the one in the request's CSRF cookie.
   */
  checkForm(c: Context, form: URLSearchParams, session: Session | undefined): void {
    const site = c.req.header("sec-fetch-site");
    const origin = c.req.header("origin");
    const own = new URL(c.req.url).origin;
    const publicOrigin = this.#publicAddress ? new URL(this.#publicAddress).origin : own;
    if (site && site !== "same-origin" && site !== "none") {
      throw csrfFailed(`the form was sent from another site (Sec-Fetch-Site: ${site})`);
    }
    if (origin && origin !== own && origin !== publicOrigin) {
      throw csrfFailed(`the form was sent from ${origin}`);
    }
    const token = form.get("csrf") ?? "";
    if (session && sameSecret(token, session.csrf)) return;
    if (sameSecret(token, getCookie(c, this.#names(c).csrf) ?? "")) return;
    throw csrfFailed("its security token is missing or out of date: reload the page");
  }
}

function csrfFailed(why: string): HttpError {
  return new HttpError(403, "csrf_failed", `Form refused: ${why}`);
}

/** `res` with the cookies set on `c` (Hono leaves them out of a response built by hand). */
export function withCookies(c: Context, res: Response): Response {
  for (const cookie of c.res.headers.getSetCookie()) res.headers.append("set-cookie", cookie);
  return res;
}
