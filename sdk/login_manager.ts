/**
 * `LoginManager`: logs a person in with the service's device flow (a code to approve on the
 * service's login page, from any browser: nothing to paste on the login node), keeps the tokens
 * in the token store, renews them with the refresh token before they expire, and logs out.
 * Scripts and cron jobs use client credentials instead and never need it.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { FuncxAPIError } from "./errors.ts";
import type { StoredTokens } from "./_token_backend.ts";
import { defaultTokenStorePath, TokenStore } from "./token_store.ts";
import { resolveEnvironment } from "./environment.ts";
import { HttpTransport } from "./_http.ts";
import { sleep } from "./_backoff.ts";

const log = getLogger(["funcx", "sdk", "login"]);

/**
 * What the user must do to approve a device login.
 *
 * @example Show the code your own way
 * ```ts
 * import assert from "node:assert/strict";
 * import type { DeviceCodePrompt } from "@funcx/sdk";
 * const show = (p: DeviceCodePrompt) => `Open ${p.verificationUriComplete} (code ${p.userCode})`;
 * const text = show({
 *   userCode: "ABCD-EFGH",
 *   verificationUri: "http://127.0.0.1:8000/login/device",
 *   verificationUriComplete: "http://127.0.0.1:8000/login/device?code=ABCD-EFGH",
 *   expiresIn: 600,
 * });
 * assert.match(text, /ABCD-EFGH/);
 * ```
 */
export interface DeviceCodePrompt {
  /** The code to check on the login page. */
  userCode: string;
  /** The login page. */
  verificationUri: string;
  /** The login page with the code filled in. */
  verificationUriComplete: string;
  /** Seconds until the code expires. */
  expiresIn: number;
}

/**
 * Options of {@linkcode LoginManager}.
 *
 * @example A token file of its own
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoginManager, type LoginManagerOptions } from "@funcx/sdk";
 * const options: LoginManagerOptions = {
 *   serviceAddress: "http://127.0.0.1:9",
 *   storePath: `${await Deno.makeTempDir()}/storage.db`,
 *   onDeviceCode: (p) => console.error(`approve ${p.userCode}`),
 * };
 * assert.equal(new LoginManager(options).serviceAddress, "http://127.0.0.1:9");
 * ```
 */
export interface LoginManagerOptions {
  /** Service address. @default from `FUNCX_SERVICE_ADDRESS` or the environment */
  serviceAddress?: string;
  /** Environment name (keys the token store). @default `FUNCX_SDK_ENVIRONMENT`, else "local" */
  environment?: string;
  /**
   * Token store file (on a runtime without `node:sqlite`, the tokens go to `storage.json` beside
   * it). @default `~/.funcx/storage.db`
   */
  storePath?: string;
  /** Shows the device code to the user. @default prints to stderr */
  onDeviceCode?: (prompt: DeviceCodePrompt) => void;
}

/** Renew tokens this long before they expire. */
const EARLY_MS = 60_000;

/** Attempts after the first for the login's requests (a renewal holds the token store's lock). */
const LOGIN_RETRIES = 2;

/**
 * Device-flow login and the stored tokens of one environment.
 *
 * @example Environment names key the stored logins
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoginManager } from "@funcx/sdk";
 * const login = new LoginManager({ serviceAddress: "http://127.0.0.1:9/", environment: "lab" });
 * assert.equal(login.environment, "lab");
 * assert.equal(login.serviceAddress, "http://127.0.0.1:9");
 * ```
 */
export class LoginManager {
  /** The service address. */
  readonly serviceAddress: string;
  /** The environment name the tokens are kept under. */
  readonly environment: string;
  readonly #storePath: string;
  readonly #onDeviceCode: (prompt: DeviceCodePrompt) => void;
  readonly #http: HttpTransport;
  #store: Promise<TokenStore> | undefined;
  #renewing: Promise<string | undefined> | undefined;

  /**
   * Builds a login manager; nothing is read until a token is needed.
   *
   * @example Log in once (when a person runs it in a terminal), then reuse the stored login
   * ```ts
   * import { FuncXClient, LoginManager } from "@funcx/sdk";
   *
   * if (Deno.env.get("FUNCX_INTERACTIVE_LOGIN")) {
   *   const login = new LoginManager(); // FUNCX_SERVICE_ADDRESS, or the environment's
   *   if (!(await login.accessToken())) await login.login(); // shows a code to approve
   *   const client = new FuncXClient({ loginManager: login });
   *   console.log(await client.whoami());
   *   await login.close();
   * }
   * ```
   *
   * @example Nothing stored yet: no token, and nothing written
   * ```ts
   * import assert from "node:assert/strict";
   * import { LoginManager } from "@funcx/sdk";
   * const storePath = `${await Deno.makeTempDir()}/storage.db`;
   * const login = new LoginManager({ serviceAddress: "http://127.0.0.1:9", storePath });
   * assert.equal(await login.accessToken(), undefined);
   * assert.equal(await login.logout(), false);
   * await assert.rejects(Deno.stat(storePath), Deno.errors.NotFound);
   * ```
   */
  constructor(options: LoginManagerOptions = {}) {
    const env = resolveEnvironment(options);
    this.serviceAddress = env.serviceAddress;
    this.environment = env.environment;
    this.#storePath = options.storePath ?? defaultTokenStorePath();
    this.#http = transport(this.serviceAddress);
    this.#onDeviceCode = options.onDeviceCode ?? ((p) => {
      console.error(
        `To log in to funcX, open ${p.verificationUriComplete}\n` +
          `and approve code ${p.userCode} (it expires in ${Math.round(p.expiresIn / 60)} min).`,
      );
    });
  }

  /**
   * Posts an OAuth form and returns the answer, a refusal included (the device flow speaks in
   * 4xx answers); a service that could not answer (429, 5xx) after the retries is its status.
   */
  async #postForm(
    path: string,
    form: Record<string, string>,
    options: { signal?: AbortSignal | undefined; http?: HttpTransport } = {},
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    try {
      const res = await (options.http ?? this.#http).exchange({
        method: "post",
        path,
        form,
        auth: false,
        idempotencyKey: false,
        signal: options.signal,
      });
      const body = res.body && typeof res.body === "object"
        ? res.body as Record<string, unknown>
        : { reason: String(res.body ?? "") };
      return { status: res.status, body };
    } catch (err) {
      if (err instanceof FuncxAPIError && err.httpStatus >= 429) {
        return { status: err.httpStatus, body: { reason: err.message } };
      }
      throw err;
    }
  }

  #open(): Promise<TokenStore> {
    this.#store ??= TokenStore.open(this.#storePath);
    return this.#store;
  }

  /**
   * A valid access token from the store, renewed with the refresh token when it is about to
   * expire; undefined when there is none (log in first).
   */
  async accessToken(): Promise<string | undefined> {
    // Asking must not create an empty token file: only a login does.
    if (!this.#store && !(await TokenStore.exists(this.#storePath))) {
      return undefined;
    }
    const store = await this.#open();
    const t = store.get(this.environment);
    if (!t || t.serviceAddress !== this.serviceAddress) return undefined;
    if (t.expiresAt - EARLY_MS > Date.now()) return t.accessToken;
    if (!t.refreshToken) return undefined;
    this.#renewing ??= this.#renew(store).finally(() => (this.#renewing = undefined));
    return await this.#renewing;
  }

  async #renew(store: TokenStore): Promise<string | undefined> {
    return await store.exclusive(async () => {
      // Another process may have renewed while we waited for the lock.
      const t = store.get(this.environment);
      if (!t?.refreshToken) return undefined;
      if (t.expiresAt - EARLY_MS > Date.now()) return t.accessToken;
      const res = await this.#postForm("v2/oauth/token", {
        grant_type: "refresh_token",
        refresh_token: t.refreshToken,
      });
      if (res.status === 400 || res.status === 401) {
        // The refresh token itself was refused (expired, revoked, rotated away): only a new
        // login helps, and the stale one is dropped.
        log.warn("Cannot renew the login ({error}): log in again", {
          error: String(res.body["error"] ?? res.status),
        });
        store.delete(this.environment);
        return undefined;
      }
      if (res.status !== 200) {
        // The service could not answer now: the login itself may be fine, so it is kept.
        throw new FuncxAPIError(
          res.status,
          "login_renewal_failed",
          `Cannot renew the login: the service at ${this.serviceAddress} answered HTTP ` +
            `${res.status}; the login is kept, try again later`,
        );
      }
      this.#save(store, res.body);
      return String(res.body["access_token"]);
    });
  }

  #save(store: TokenStore, body: Record<string, unknown>): StoredTokens {
    const tokens: StoredTokens = {
      serviceAddress: this.serviceAddress,
      accessToken: String(body["access_token"]),
      expiresAt: Date.now() + Number(body["expires_in"] ?? 3600) * 1000,
      refreshToken: typeof body["refresh_token"] === "string" ? body["refresh_token"] : null,
    };
    store.set(this.environment, tokens);
    return tokens;
  }

  /** Runs the device flow: shows the code, waits for approval, stores the tokens. */
  async login(options: { signal?: AbortSignal } = {}): Promise<void> {
    const start = await this.#postForm("v2/oauth/device", { client_id: "funcx-cli" }, {
      signal: options.signal,
    });
    if (start.status !== 200) {
      throw new FuncxAPIError(
        start.status,
        String(start.body["code"] ?? "login_failed"),
        `Cannot start a login at ${this.serviceAddress}: ${String(start.body["reason"] ?? "")}`,
      );
    }
    const b = start.body;
    this.#onDeviceCode({
      userCode: String(b["user_code"]),
      verificationUri: String(b["verification_uri"]),
      verificationUriComplete: String(b["verification_uri_complete"]),
      expiresIn: Number(b["expires_in"]),
    });
    let interval = Number(b["interval"] ?? 5);
    const deadline = Date.now() + Number(b["expires_in"] ?? 600) * 1000;
    while (Date.now() < deadline) {
      options.signal?.throwIfAborted();
      await sleep(interval * 1000, options.signal);
      options.signal?.throwIfAborted();
      const res = await this.#postForm("v2/oauth/token", {
        grant_type: "urn:ietf:params:oauth:grant-type:device_code",
        device_code: String(b["device_code"]),
      }, { signal: options.signal });
      if (res.status === 200) {
        this.#save(await this.#open(), res.body);
        return;
      }
      const error = String(res.body["error"] ?? "");
      if (error === "authorization_pending") continue;
      if (error === "slow_down") {
        interval += 1;
        continue;
      }
      throw new FuncxAPIError(
        res.status,
        error || "login_failed",
        `Login failed: ${String(res.body["error_description"] ?? res.body["reason"] ?? error)}`,
      );
    }
    throw new FuncxAPIError(400, "expired_token", "Login not approved in time: run it again");
  }

  /** Revokes the stored tokens at the service and forgets them; whether there were any. */
  async logout(): Promise<boolean> {
    if (!this.#store && !(await TokenStore.exists(this.#storePath))) {
      return false;
    }
    const store = await this.#open();
    const t = store.get(this.environment);
    if (!t) return false;
    for (const token of [t.accessToken, t.refreshToken]) {
      if (!token) continue;
      const http = t.serviceAddress === this.serviceAddress
        ? this.#http
        : transport(t.serviceAddress);
      await this.#postForm("v2/oauth/revoke", { token }, { http }).catch((err) =>
        log.warn("Cannot revoke a token: {err}", { err: String(err) })
      );
    }
    store.delete(this.environment);
    return true;
  }

  /** Closes the token store. */
  async close(): Promise<void> {
    const s = this.#store;
    this.#store = undefined;
    (await s)?.close();
  }
}

function transport(serviceAddress: string): HttpTransport {
  return new HttpTransport({ serviceAddress, timeoutMs: 30_000, retries: LOGIN_RETRIES });
}
