/**
 * For the dashboard's tests: users with passwords, and signing in on `/login` the way a browser
 * does (the form's CSRF token and cookie, then the session cookie). A service with sign-in
 * settings of its own is `startService({ env })` (the environment of this test process is shared
 * by the files that run beside it, so it is not touched).
 *
 * @module
 */
import { runDeno } from "./process.ts";

/** Adds a user with a password, and an API client acting for it. */
export async function addUser(
  database: string,
  name: string,
  password: string,
): Promise<{ clientId: string; clientSecret: string }> {
  const service = "cli/funcx_service.ts";
  await runDeno(
    service,
    ["user", "add", name, "--password-stdin", "--database", database],
    {},
    `${password}\n`,
  );
  const creds = JSON.parse(
    await runDeno(service, ["client", "create", "--user", name, "--database", database]),
  );
  return { clientId: creds.client_id, clientSecret: creds.client_secret };
}

/** A browser-like visitor: keeps cookies between requests and sends `Origin` on POSTs. */
export class Visitor {
  readonly base: string;
  readonly cookies: Map<string, string> = new Map();

  constructor(base: string) {
    this.base = base;
  }

  /** The `Cookie` header value. */
  get cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  #keep(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const eq = pair!.indexOf("=");
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      if (value === "" || /max-age=0/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  /** GETs `path` (no redirects followed); returns the answer and its text. */
  async get(path: string): Promise<{ res: Response; text: string }> {
    const res = await fetch(`${this.base}${path}`, {
      headers: { cookie: this.cookieHeader },
      redirect: "manual",
    });
    this.#keep(res);
    return { res, text: await res.text() };
  }

  /** POSTs a form to `path` as a same-origin browser would (no redirects followed). */
  async post(
    path: string,
    form: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<{ res: Response; text: string }> {
    const res = await fetch(`${this.base}${path}`, {
      method: "POST",
      headers: { cookie: this.cookieHeader, origin: this.base, ...headers },
      body: new URLSearchParams(form),
      redirect: "manual",
    });
    this.#keep(res);
    return { res, text: await res.text() };
  }

  /** Signs in on `/login` with the form's token; returns the POST's answer. */
  async signIn(username: string, password: string): Promise<{ res: Response; text: string }> {
    const form = await this.get("/login");
    return await this.post("/login", {
      csrf: csrfOf(form.text),
      username,
      password,
      next: "/",
    });
  }
}

/** The CSRF token in a page's form. */
export function csrfOf(html: string): string {
  const m = /name="csrf" value="([^"]*)"/.exec(html);
  if (!m) throw new Error(`No CSRF token in the page: ${html.slice(0, 300)}`);
  return m[1]!;
}
