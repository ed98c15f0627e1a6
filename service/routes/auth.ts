/**
 * OAuth 2.0 routes: `POST /v2/oauth/token` (client credentials for scripts and cron jobs, refresh
 * tokens, and the device-code grant), `POST /v2/oauth/device` (starts a device authorization for
 * people on login nodes) and `POST /v2/oauth/revoke`. Parameters come as a form or JSON body, or
 * as HTTP Basic auth.
 *
 * @module
 */
import { Hono } from "hono";
import {
  issueClientToken,
  oauthError,
  pollDeviceToken,
  PUBLIC_CLIENT_ID,
  refreshToken,
  revokeToken,
  startDeviceAuthorization,
} from "../auth.ts";
import { HttpError } from "../http_error.ts";
import type { AppDeps, AppEnv } from "../context.ts";
import type { AccessToken } from "../auth.ts";
import type { WebDeps } from "./login.ts";

async function readParams(req: Request): Promise<Record<string, string>> {
  const type = req.headers.get("content-type") ?? "";
  const out: Record<string, string> = {};
  if (type.includes("application/json")) {
    const body = await req.json().catch(() => {
      throw new HttpError(400, "invalid_json", "Request body is not valid JSON");
    });
    if (body && typeof body === "object") {
      for (const [k, v] of Object.entries(body)) if (typeof v === "string") out[k] = v;
    }
  } else {
    for (const [k, v] of new URLSearchParams(await req.text())) out[k] = v;
  }
  const basic = /^Basic\s+(\S+)$/i.exec(req.headers.get("authorization") ?? "");
  if (basic) {
    const [id, secret] = atob(basic[1]!).split(":");
    if (id && secret) {
      out["client_id"] ??= decodeURIComponent(id);
      out["client_secret"] ??= decodeURIComponent(secret);
    }
  }
  return out;
}

const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

/** Token routes: `/token`, `/device`, `/revoke`. */
export function authRoutes(deps: AppDeps, web: WebDeps): Hono<AppEnv> {
  const ttl = () => ({
    accessTtlS: deps.settings.tokenTtlS,
    refreshTtlS: deps.settings.refreshTtlS,
  });
  return new Hono<AppEnv>()
    .post("/token", async (c) => {
      const p = await readParams(c.req.raw);
      const grant = p["grant_type"];
      if (grant === "client_credentials") {
        const id = p["client_id"];
        const secret = p["client_secret"];
        if (!id || !secret) {
          throw oauthError(400, "invalid_request", "Missing client_id or client_secret");
        }
        // A wrong secret counts against the client and the address like a wrong password.
        let issued: AccessToken | undefined;
        const ok = await web.guard.attempt("client", id, web.sessions.address(c), async () => {
          try {
            issued = await issueClientToken(deps.store, id, secret, ttl());
            return true;
          } catch (err) {
            if (err instanceof HttpError && err.status === 401) return false;
            throw err;
          }
        });
        if (!ok || !issued) throw oauthError(401, "invalid_client", "Invalid client credentials");
        return c.json(issued);
      }
      if (grant === "refresh_token") {
        if (!p["refresh_token"]) throw oauthError(400, "invalid_request", "Missing refresh_token");
        return c.json(await refreshToken(deps.store, p["refresh_token"], ttl()));
      }
      if (grant === DEVICE_GRANT) {
        if (!p["device_code"]) throw oauthError(400, "invalid_request", "Missing device_code");
        return c.json(
          await pollDeviceToken(deps.store, p["device_code"], ttl(), deps.settings.deviceIntervalS),
        );
      }
      throw oauthError(
        400,
        "unsupported_grant_type",
        `Unsupported grant_type ${JSON.stringify(grant ?? null)}: use "client_credentials", ` +
          `"refresh_token" or "${DEVICE_GRANT}"`,
      );
    })
    .post("/device", async (c) => {
      const p = await readParams(c.req.raw);
      const clientId = p["client_id"] ?? PUBLIC_CLIENT_ID;
      if (clientId !== PUBLIC_CLIENT_ID && !await deps.store.getClient(clientId)) {
        throw oauthError(401, "invalid_client", `Unknown client_id "${clientId}"`);
      }
      const origin = deps.settings.publicAddress ?? new URL(c.req.url).origin;
      return c.json(
        await startDeviceAuthorization(deps.store, clientId, origin, {
          expiresInS: 600,
          intervalS: deps.settings.deviceIntervalS,
        }),
      );
    })
    .post("/revoke", async (c) => {
      const p = await readParams(c.req.raw);
      if (!p["token"]) throw oauthError(400, "invalid_request", "Missing token");
      await revokeToken(deps.store, p["token"]);
      return c.json({ revoked: true });
    });
}
