/**
 * For the dashboard's tests: a `funcx-service` process with environment settings of its own
 * (short sign-in locks; the environment of this test process is shared by the files that run
 * beside it, so it is not touched), users with passwords, and signing in on `/login` the way a
 * browser does (the form's CSRF token and cookie, then the session cookie).
 *
 * @module
 */
import { join } from "node:path";
import { runDeno, spawnDeno } from "./process.ts";
import { type BrokerAccess, managementUrlOf, type ServiceHandle } from "./stack.ts";

/** Options of {@linkcode startServiceWithEnv}. */
export interface ServiceWithEnvOptions {
  dir: string;
  amqpUrl: string;
  broker: BrokerAccess;
  /** SQLite file or PostgreSQL URL. */
  database: string;
  /** Environment of the service process (`FUNCX_SERVICE_SIGN_IN_*`, ...). */
  env: Record<string, string>;
  /** More `serve` flags (`--sign-in-lock 2`, ...). @default none */
  args?: string[];
  /** Log file name in `dir`. @default "service.log" */
  logName?: string;
  /** An API client to reuse (a second replica). @default a new one for user "dev" */
  existingClient?: { clientId: string; clientSecret: string };
}

/** Starts `funcx-service serve` with `env`, and an API client unless one is given. */
export async function startServiceWithEnv(o: ServiceWithEnvOptions): Promise<ServiceHandle> {
  const creds = o.existingClient
    ? { client_id: o.existingClient.clientId, client_secret: o.existingClient.clientSecret }
    : JSON.parse(
      await runDeno("cli/funcx_service.ts", [
        "client",
        "create",
        "--database",
        o.database,
        "--user",
        "dev",
      ]),
    );
  const process = await spawnDeno("cli/funcx_service.ts", [
    "serve",
    "--database",
    o.database,
    "--port",
    "0",
    "--amqp-url",
    o.amqpUrl,
    "--management-url",
    managementUrlOf(o.broker),
    "--rate-limit",
    "0",
    ...(o.args ?? []),
  ], {
    env: o.env,
    logFile: join(o.dir, o.logName ?? "service.log"),
    readyEvent: "listening",
  });
  const address = String(process.ready["address"]);
  return {
    process,
    address,
    clientId: creds.client_id,
    clientSecret: creds.client_secret,
    dbPath: o.database,
    amqpUrl: o.amqpUrl,
    env: {
      FUNCX_SERVICE_ADDRESS: address,
      FUNCX_SDK_CLIENT_ID: creds.client_id,
      FUNCX_SDK_CLIENT_SECRET: creds.client_secret,
    },
  };
}

/** Adds a user with a password, and an API client acting for it. */
export async function addUser(
  database: string,
  name: string,
  password: string,
): Promise<{ clientId: string; clientSecret: string }> {
  const root = new URL("../../", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "-A",
      `--config=${join(root, "deno.json")}`,
      join(root, "cli/funcx_service.ts"),
      "user",
      "add",
      name,
      "--password-stdin",
      "--database",
      database,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(`${password}\n`));
  await w.close();
  const out = await child.output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  const creds = JSON.parse(
    await runDeno("cli/funcx_service.ts", [
      "client",
      "create",
      "--user",
      name,
      "--database",
      database,
    ]),
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
