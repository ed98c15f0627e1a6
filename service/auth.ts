/**
 * Bearer-token authentication: API clients (client id + secret) trade their credentials for
 * short-lived access tokens at `POST /v2/oauth/token`; every other `/v2` route (but `/version`)
 * needs `Authorization: Bearer <token>`. Secrets and tokens are stored only as SHA-256 hashes:
 * both are 256-bit random values, so a fast hash is enough for them.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { decodeBase64Url, encodeBase64Url } from "./_encoding.ts";
import { HttpError } from "./http_error.ts";
import { serviceMetrics } from "./metrics.ts";
import type { Store, UserRecord } from "./store.ts";

/**
 * SHA-256 of a UTF-8 string or of bytes, hex encoded. Computed in place: `crypto.subtle` would
 * send every request's token through a thread pool and back (a wait on a busy machine).
 */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A random URL-safe secret of `bytes` random bytes. */
export function randomSecret(bytes = 32): string {
  return encodeBase64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** A new API client's credentials, shown once. */
export interface ClientCredentials {
  client_id: string;
  client_secret: string;
  user: string;
}

/** Creates an API client for user `userName` (creating the user if needed). */
export async function createClient(
  store: Store,
  userName: string,
  name = "default",
): Promise<ClientCredentials> {
  const user = await store.ensureUser(userName);
  const clientId = crypto.randomUUID();
  const secret = randomSecret();
  await store.addClient(clientId, user.id, await sha256Hex(secret), name);
  return { client_id: clientId, client_secret: secret, user: user.name };
}

/** Client id of the command-line tools (a public client: device flow only, no secret). */
export const PUBLIC_CLIENT_ID = "funcx-cli";

/** An issued token pair. */
export interface AccessToken {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token?: string;
}

/** Token lifetimes in seconds. */
export interface TokenLifetimes {
  accessTtlS: number;
  refreshTtlS: number;
}

async function issue(
  store: Store,
  userId: string,
  clientId: string,
  ttl: TokenLifetimes,
  withRefresh: boolean,
): Promise<AccessToken> {
  const token = randomSecret();
  const now = Date.now() / 1000;
  await store.addToken(await sha256Hex(token), userId, clientId, now + ttl.accessTtlS);
  const out: AccessToken = {
    access_token: token,
    token_type: "Bearer",
    expires_in: ttl.accessTtlS,
  };
  if (withRefresh) {
    const refresh = randomSecret();
    await store.addToken(
      await sha256Hex(refresh),
      userId,
      clientId,
      now + ttl.refreshTtlS,
      "refresh",
    );
    out.refresh_token = refresh;
  }
  return out;
}

/** An OAuth 2.0 error answer (RFC 6749 §5.2 / RFC 8628 §3.5) inside the funcX envelope. */
export function oauthError(status: 400 | 401, error: string, description: string): HttpError {
  return new HttpError(
    status,
    status === 401 ? "unauthorized" : "bad_request",
    description,
    [
      error,
    ],
    undefined,
    { error, error_description: description },
  );
}

/** Checks client credentials and issues an access token (no refresh token: the secret renews). */
export async function issueClientToken(
  store: Store,
  clientId: string,
  clientSecret: string,
  ttl: TokenLifetimes,
): Promise<AccessToken> {
  const client = await store.getClient(clientId);
  if (!client || client.secretHash !== await sha256Hex(clientSecret)) {
    throw oauthError(401, "invalid_client", "Invalid client credentials");
  }
  return await issue(store, client.userId, clientId, ttl, false);
}

/** Trades a refresh token for a new pair; the old refresh token stops working (rotation). */
export async function refreshToken(
  store: Store,
  refresh: string,
  ttl: TokenLifetimes,
): Promise<AccessToken> {
  const hash = await sha256Hex(refresh);
  const user = await store.userForToken(hash, Date.now() / 1000, "refresh");
  // Deleting decides who rotates it: of two requests racing with one token (two replicas, a
  // retried request), only the one whose delete removed it gets a new pair.
  if (!user || !await store.deleteToken(hash)) {
    throw oauthError(
      400,
      "invalid_grant",
      "Refresh token is invalid, expired or revoked: log in again",
    );
  }
  return await issue(store, user.id, user.clientId ?? PUBLIC_CLIENT_ID, ttl, true);
}

/** Revokes an access or refresh token (RFC 7009: unknown tokens are not an error). */
export async function revokeToken(store: Store, token: string): Promise<void> {
  await store.deleteToken(await sha256Hex(token));
}

/** What `POST /v2/oauth/device` answers. */
export interface DeviceAuthorization {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

const USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";

function userCode(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const chars = Array.from(bytes, (b) => USER_CODE_ALPHABET[b % USER_CODE_ALPHABET.length]);
  return `${chars.slice(0, 4).join("")}-${chars.slice(4).join("")}`;
}

/** Starts a device authorization; the user approves it at `<origin>/login`. */
export async function startDeviceAuthorization(
  store: Store,
  clientId: string,
  origin: string,
  options: { expiresInS: number; intervalS: number },
): Promise<DeviceAuthorization> {
  const device = randomSecret();
  const code = userCode();
  await store.addDeviceCode(
    await sha256Hex(device),
    code,
    clientId,
    Date.now() / 1000 + options.expiresInS,
  );
  return {
    device_code: device,
    user_code: code,
    verification_uri: `${origin}/login`,
    verification_uri_complete: `${origin}/login?code=${code}`,
    expires_in: options.expiresInS,
    interval: options.intervalS,
  };
}

/** One poll of the token route with a device code (RFC 8628 §3.4). */
export async function pollDeviceToken(
  store: Store,
  deviceCode: string,
  ttl: TokenLifetimes,
  intervalS: number,
): Promise<AccessToken> {
  const hash = await sha256Hex(deviceCode);
  const rec = await store.deviceCode(hash);
  const now = Date.now() / 1000;
  if (!rec) throw oauthError(400, "invalid_grant", "Unknown device code: start the login again");
  if (rec.expiresAt <= now) {
    await store.deleteDeviceCode(hash);
    throw oauthError(400, "expired_token", "The device code expired: start the login again");
  }
  if (rec.status === "denied") {
    await store.deleteDeviceCode(hash);
    throw oauthError(400, "access_denied", "The login was denied on the login page");
  }
  if (rec.status === "pending") {
    const last = await store.pollDeviceCode(hash, now);
    // Polling faster than the interval asks for is answered with slow_down (RFC 8628 §3.5).
    if (now - last < intervalS * 0.8) {
      throw oauthError(400, "slow_down", `Poll at most every ${intervalS} s`);
    }
    throw oauthError(400, "authorization_pending", "Waiting for the user to approve the login");
  }
  // As with refresh tokens, the delete decides which of two racing polls gets the tokens.
  if (!await store.deleteDeviceCode(hash)) {
    throw oauthError(
      400,
      "invalid_grant",
      "The device code was already used: start the login again",
    );
  }
  return await issue(store, rec.userId!, rec.clientId, ttl, true);
}

const PBKDF2_ITERATIONS = 310_000;

/** Hashes a password with PBKDF2-SHA256 and a random salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const bits = await pbkdf2(password, salt, PBKDF2_ITERATIONS);
  return `pbkdf2-sha256$${PBKDF2_ITERATIONS}$${encodeBase64Url(salt)}$${encodeBase64Url(bits)}`;
}

/** Checks a password against a {@linkcode hashPassword} hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, iter, salt, hash] = stored.split("$");
  if (scheme !== "pbkdf2-sha256" || !iter || !salt || !hash) return false;
  const bits = await pbkdf2(password, decodeBase64Url(salt), Number(iter));
  const expected = decodeBase64Url(hash);
  if (bits.length !== expected.length) return false;
  let diff = 0;
  for (let i = 0; i < bits.length; i++) diff |= bits[i]! ^ expected[i]!;
  return diff === 0;
}

async function pbkdf2(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(password),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, iterations },
    key,
    256,
  );
  return new Uint8Array(bits);
}

/** Resolves the user of an `Authorization` header, or throws a 401. */
export async function authenticate(
  store: Store,
  header: string | undefined,
): Promise<UserRecord & { clientId: string | null }> {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!m) {
    serviceMetrics.tokenRejections.inc({ reason: "missing" });
    throw new HttpError(
      401,
      "unauthorized",
      "Missing bearer token: send 'Authorization: Bearer <token>' (get one at POST /v2/oauth/token)",
    );
  }
  const user = await store.userForToken(await sha256Hex(m[1]!), Date.now() / 1000);
  if (!user) {
    serviceMetrics.tokenRejections.inc({ reason: "invalid" });
    throw new HttpError(401, "unauthorized", "Invalid or expired token: log in again");
  }
  return user;
}
