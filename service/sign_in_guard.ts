/**
 * Slows and records password guessing, at the two doors that take a secret: the sign-in form
 * (`POST /login`, name and password) and `POST /v2/oauth/token` (client id and secret). Each
 * attempt is counted per account (user name or client id) and per client address in the store,
 * so every replica on one PostgreSQL sees the same counts. A failed attempt delays the next one
 * for that account (doubling each time); the attempt that reaches the limit starts a lock, and
 * while it lasts every attempt (the right secret too) is answered `429` with `Retry-After`. A
 * successful sign-in clears the account's count, so its owner waits at most one lock for someone
 * else's guesses. Every failed and refused attempt is logged with the client address.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { HttpError } from "./http_error.ts";
import { serviceMetrics } from "./metrics.ts";
import type { AttemptLimit, Store } from "./store.ts";

const log = getLogger(["funcx", "service", "sign-in"]);

/** Limits on guessing and the lifetime of dashboard sessions. */
export interface SignInSettings {
  /** Failed attempts on one account (user or API client) in a window that lock it. @default 5 */
  accountMaxFailures: number;
  /** Failed attempts from one client address in a window that lock it. @default 20 */
  addressMaxFailures: number;
  /** Seconds over which failures are counted. @default 900 */
  windowS: number;
  /** Seconds a lock lasts. @default 300 */
  lockS: number;
  /** Delay in ms before checking the attempt after one failure; doubles with each. @default 250 */
  delayMs: number;
  /** Longest delay in ms. @default 4000 */
  maxDelayMs: number;
  /** Seconds a dashboard session lasts. @default 28800 (8 hours) */
  sessionTtlS: number;
  /**
   * Take the client address from the last `X-Forwarded-For` entry and the scheme from
   * `X-Forwarded-Proto` (only behind a proxy that sets them). @default false
   */
  trustProxy: boolean;
}

/** The defaults of {@linkcode SignInSettings}. */
export const DEFAULT_SIGN_IN_SETTINGS: Readonly<SignInSettings> = Object.freeze({
  accountMaxFailures: 5,
  addressMaxFailures: 20,
  windowS: 900,
  lockS: 300,
  delayMs: 250,
  maxDelayMs: 4000,
  sessionTtlS: 28800,
  trustProxy: false,
});

/** The environment variable of each setting. */
export const SIGN_IN_ENV: Readonly<Record<keyof SignInSettings, string>> = Object.freeze({
  accountMaxFailures: "FUNCX_SERVICE_SIGN_IN_MAX_FAILURES",
  addressMaxFailures: "FUNCX_SERVICE_SIGN_IN_MAX_FAILURES_PER_ADDRESS",
  windowS: "FUNCX_SERVICE_SIGN_IN_WINDOW",
  lockS: "FUNCX_SERVICE_SIGN_IN_LOCK",
  delayMs: "FUNCX_SERVICE_SIGN_IN_DELAY_MS",
  maxDelayMs: "FUNCX_SERVICE_SIGN_IN_MAX_DELAY_MS",
  sessionTtlS: "FUNCX_SERVICE_SESSION_TTL",
  trustProxy: "FUNCX_SERVICE_TRUST_PROXY",
});

/** The `funcx-service serve` flag of each setting (it wins over the environment variable). */
export const SIGN_IN_FLAGS: Readonly<Record<keyof SignInSettings, string>> = Object.freeze({
  accountMaxFailures: "--sign-in-max-failures",
  addressMaxFailures: "--sign-in-max-failures-per-address",
  windowS: "--sign-in-window",
  lockS: "--sign-in-lock",
  delayMs: "--sign-in-delay-ms",
  maxDelayMs: "--sign-in-max-delay-ms",
  sessionTtlS: "--session-ttl",
  trustProxy: "--trust-proxy",
});

/**
 * The settings from `funcx-service serve` flags (`flags`, by setting), then the environment, then
 * the defaults; a bad value throws a `RangeError` naming the flag or the variable it came from.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signInSettingsFrom } from "./sign_in_guard.ts";
 * const s = signInSettingsFrom({ lockS: "3" }, { FUNCX_SERVICE_SIGN_IN_LOCK: "2" });
 * assert.equal(s.lockS, 3);
 * assert.throws(() => signInSettingsFrom({ lockS: "soon" }, {}), /--sign-in-lock/);
 * ```
 */
export function signInSettingsFrom(
  flags: Partial<Record<keyof SignInSettings, string | boolean>>,
  env: Readonly<Record<string, string | undefined>>,
): SignInSettings {
  const merged: Record<string, string | undefined> = { ...env };
  const named: Record<string, string> = {};
  for (const [field, value] of Object.entries(flags) as [keyof SignInSettings, unknown][]) {
    if (value === undefined || value === false) continue;
    merged[SIGN_IN_ENV[field]] = value === true ? "true" : String(value);
    named[SIGN_IN_ENV[field]] = SIGN_IN_FLAGS[field];
  }
  try {
    return signInSettingsFromEnv(merged);
  } catch (err) {
    const m = /^Invalid (\S+) /.exec((err as Error).message);
    const flag = m ? named[m[1]!] : undefined;
    if (!flag) throw err;
    throw new RangeError((err as Error).message.replace(m![1]!, flag));
  }
}

/**
 * The settings from `FUNCX_SERVICE_SIGN_IN_*`, `FUNCX_SERVICE_SESSION_TTL` and
 * `FUNCX_SERVICE_TRUST_PROXY` over the defaults; a bad value throws a `RangeError` naming it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signInSettingsFromEnv } from "./sign_in_guard.ts";
 * const s = signInSettingsFromEnv({ FUNCX_SERVICE_SIGN_IN_LOCK: "2" });
 * assert.deepEqual([s.lockS, s.accountMaxFailures], [2, 5]);
 * assert.throws(() => signInSettingsFromEnv({ FUNCX_SERVICE_SIGN_IN_LOCK: "soon" }), RangeError);
 * ```
 */
export function signInSettingsFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): SignInSettings {
  const out: SignInSettings = { ...DEFAULT_SIGN_IN_SETTINGS };
  for (const [field, name] of Object.entries(SIGN_IN_ENV) as [keyof SignInSettings, string][]) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    if (field === "trustProxy") {
      if (!/^(0|1|true|false)$/i.test(raw)) {
        throw new RangeError(`Invalid ${name} "${raw}": expected 1, 0, true or false`);
      }
      out.trustProxy = /^(1|true)$/i.test(raw);
      continue;
    }
    const n = Number(raw);
    const least = field === "accountMaxFailures" || field === "addressMaxFailures" ? 1 : 0;
    if (!Number.isFinite(n) || n < least) {
      throw new RangeError(`Invalid ${name} "${raw}": expected a number >= ${least}`);
    }
    out[field] = n;
  }
  return out;
}

/** What is being signed in to: a person's account, or an API client. */
export type AccountKind = "user" | "client";

/** Guards the doors that take a secret. */
export class SignInGuard {
  readonly #store: Store;
  readonly #settings: SignInSettings;

  constructor(store: Store, settings: SignInSettings) {
    this.#store = store;
    this.#settings = settings;
  }

  /**
   * Runs `verify` (whether the secret is right) for `account` from `address` under the limits.
   * Resolves `true` or `false` with its answer; throws a 429 `too_many_attempts` with
   * `Retry-After` when the account or address is locked, or this failure locked it.
   */
  async attempt(
    kind: AccountKind,
    account: string,
    address: string,
    verify: () => Promise<boolean>,
  ): Promise<boolean> {
    const s = this.#settings;
    const accountKey = `${kind}:${account.toLowerCase()}`;
    // A person's account counts attempts as they start, so a burst of guesses sent at once
    // cannot get past the limit. An API client counts failures only: scripts sharing one client
    // may ask for tokens many at a time, and its secret is 256 random bits, not a password.
    const upFront = kind === "user";
    const limits: AttemptLimit[] = [
      {
        key: accountKey,
        maxFailures: s.accountMaxFailures,
        windowS: s.windowS,
        lockS: s.lockS,
        countUpFront: upFront,
      },
      {
        key: `addr:${address}`,
        maxFailures: s.addressMaxFailures,
        windowS: s.windowS,
        lockS: s.lockS,
        countUpFront: false,
      },
    ];
    const at = { kind, account, address };
    const now = Date.now() / 1000;
    const before = await this.#store.countSignIn(limits, now);
    const lockedUntil = Math.max(...before.map((v) => v.lockedUntil));
    if (lockedUntil > now) {
      log.warn(
        `Refused sign-in to ${kind} {account} from {address}: locked for {retryS} s more ({keys})`,
        { ...at, retryS: Math.ceil(lockedUntil - now), keys: lockedKeys(before, now) },
      );
      serviceMetrics.signInFailures.inc({ kind, reason: "locked" });
      throw tooManyAttempts(lockedUntil - now);
    }
    const counted = before.find((v) => v.key === accountKey)?.count ?? 0;
    const failedBefore = upFront ? counted - 1 : counted;
    if (failedBefore >= 1 && s.delayMs > 0) {
      const ms = Math.min(s.delayMs * 2 ** (failedBefore - 1), s.maxDelayMs);
      await new Promise((r) => setTimeout(r, ms));
    }
    if (await verify()) {
      await this.#store.passSignIn(accountKey);
      return true;
    }
    const later = Date.now() / 1000;
    const after = await this.#store.failSignIn(limits, later);
    serviceMetrics.signInFailures.inc({ kind, reason: "bad_secret" });
    const lockedNow = Math.max(...after.map((v) => v.lockedUntil));
    log.warn(`Failed sign-in to ${kind} {account} from {address} ({count} of {max})`, {
      ...at,
      count: failedBefore + 1,
      max: s.accountMaxFailures,
    });
    if (lockedNow > later) {
      log.warn(`Locked sign-in to ${kind} {account} from {address} for {lockS} s ({keys})`, {
        ...at,
        lockS: s.lockS,
        keys: lockedKeys(after, later),
      });
      throw tooManyAttempts(lockedNow - later);
    }
    return false;
  }
}

function lockedKeys(verdicts: ReadonlyArray<{ key: string; lockedUntil: number }>, now: number) {
  return verdicts.filter((v) => v.lockedUntil > now).map((v) => v.key).join(", ");
}

/** The 429 of a locked account or address. */
export function tooManyAttempts(seconds: number): HttpError {
  const retry = Math.max(1, Math.ceil(seconds));
  return new HttpError(
    429,
    "too_many_attempts",
    `Too many failed sign-ins: try again in ${retry} s`,
    [retry],
    undefined,
    { error: "too_many_attempts", retry_after: retry },
    { "retry-after": String(retry) },
  );
}
