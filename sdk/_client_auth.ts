/**
 * Who the client is: the bearer token on its requests, from a token given directly, from API
 * client credentials (`FUNCX_SDK_CLIENT_ID`, `FUNCX_SDK_CLIENT_SECRET`) traded at the service, or
 * from the logins a `LoginManager` stored; and the `whoami` route. The transport asks it for the
 * token on every authenticated request and tells it when the service refused one.
 *
 * @module
 */
import process from "node:process";
import { getLogger } from "@logtape/logtape";
import type { HttpAuth, HttpRequest } from "./_http.ts";
import type { ClientTransport, RequestOptions } from "./_client_transport.ts";
import { FuncxAPIError } from "./errors.ts";
import { LoginManager } from "./login_manager.ts";

const log = getLogger(["funcx", "sdk", "client"]);

/** Credentials of {@linkcode ClientAuth}; each falls back to its `FUNCX_SDK_*` variable. */
export interface ClientAuthOptions {
  /** API client id. */
  clientId?: string | undefined;
  /** API client secret. */
  clientSecret?: string | undefined;
  /** A bearer token to use instead of client credentials. */
  accessToken?: string | undefined;
  /** Stored logins to use when there are no client credentials. */
  loginManager?: LoginManager | undefined;
  /** The service's base address, for the default login manager. */
  serviceAddress: string;
  /** The environment's name, for the default login manager. */
  environment: string;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** The client's bearer token, as the transport asks for it. */
export class ClientAuth implements HttpAuth {
  readonly #clientId: string | undefined;
  readonly #clientSecret: string | undefined;
  readonly #loginManager: LoginManager | undefined;
  /** Sends the token request (straight through the transport, with no token on it). */
  readonly #send: (req: HttpRequest) => Promise<unknown>;
  #token: CachedToken | undefined;
  #tokenRequest: Promise<string> | undefined;

  /** Reads the credentials; nothing is sent until a token is asked for. */
  constructor(options: ClientAuthOptions, send: (req: HttpRequest) => Promise<unknown>) {
    this.#send = send;
    this.#clientId = options.clientId ?? process.env.FUNCX_SDK_CLIENT_ID;
    this.#clientSecret = options.clientSecret ?? process.env.FUNCX_SDK_CLIENT_SECRET;
    const token = options.accessToken ?? process.env.FUNCX_SDK_ACCESS_TOKEN;
    if (token) this.#token = { token, expiresAt: Infinity };
    this.#loginManager = options.loginManager ??
      (token || (this.#clientId && this.#clientSecret) ? undefined : new LoginManager({
        serviceAddress: options.serviceAddress,
        environment: options.environment,
      }));
  }

  /** The current token, logging in (once for all callers at a time) when there is none. */
  async token(): Promise<string> {
    if (this.#token && this.#token.expiresAt > Date.now()) return this.#token.token;
    this.#tokenRequest ??= this.#login().finally(() => (this.#tokenRequest = undefined));
    return await this.#tokenRequest;
  }

  /** Forgets the token after a 401. Only client credentials can log in again by themselves. */
  invalidate(): boolean {
    if (!this.#clientId || !this.#clientSecret) return false;
    this.#token = undefined;
    return true;
  }

  async #login(): Promise<string> {
    if (!this.#clientId || !this.#clientSecret) {
      const stored = await this.#loginManager?.accessToken();
      if (stored) return stored;
      throw new FuncxAPIError(
        401,
        "unauthorized",
        "Not logged in: set FUNCX_SDK_CLIENT_ID and FUNCX_SDK_CLIENT_SECRET (create them with " +
          "`funcx-service client create`), or log in with `new LoginManager().login()`",
      );
    }
    // Asking for a token twice does no harm, so it is retried like a GET, with no key.
    const t = await this.#send({
      method: "post",
      path: "v2/oauth/token",
      form: {
        grant_type: "client_credentials",
        client_id: this.#clientId,
        client_secret: this.#clientSecret,
      },
      idempotencyKey: false,
      auth: false,
      doing: "Cannot log in with client credentials",
    }) as { access_token: string; expires_in: number };
    // Renew a minute early so a request never carries a token that expires in flight.
    this.#token = { token: t.access_token, expiresAt: Date.now() + (t.expires_in - 60) * 1000 };
    log.debug("Logged in as client {id}", { id: this.#clientId });
    return t.access_token;
  }
}

/** Who the service says this client is. */
export async function whoami(
  transport: ClientTransport,
  options: RequestOptions = {},
): Promise<{ id: string; username: string; client_id: string | null }> {
  return await transport.request("get", "v2/whoami", undefined, options);
}
