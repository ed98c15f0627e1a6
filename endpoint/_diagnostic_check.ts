/**
 * What every self-diagnostic check shares: its name and result, the options of the run, and how
 * a failure's message and a TLS failure's fix are worded.
 *
 * @module
 */
import type { FuncXClient } from "../sdk/client.ts";
import type { EndpointConfig } from "./config.ts";

/** The checks, in the order they run. */
export type CheckName = "service" | "clock" | "token" | "broker" | "tls" | "disk" | "commands";

/** The outcome of one check. */
export interface CheckResult {
  /** Which check. */
  check: CheckName;
  /** `pass`, `fail`, or `skip` (not applicable, or its prerequisite failed). */
  status: "pass" | "fail" | "skip";
  /** What was found. */
  detail: string;
  /** What to do about a failure; absent when it passed. */
  fix?: string;
}

/** Options of {@linkcode selfDiagnostic}. */
export interface SelfDiagnosticOptions {
  /** The endpoint's name. */
  name: string;
  /** Its directory. */
  endpointDir: string;
  /** Its validated config. */
  config: EndpointConfig;
  /** A logged-in client for the config's service; rejects with the reason when there is none. */
  client: () => Promise<FuncXClient>;
  /** Largest clock difference with the service, in seconds. @default 30 */
  maxClockSkewS?: number;
  /** Least free space for the result journal, in MiB. @default 100 */
  minFreeMiB?: number;
  /** The `PATH` commands are looked up in. @default `$PATH` */
  path?: string;
  /** Milliseconds each network step may take. @default 10000 */
  timeoutMs?: number;
}

/** An error's message, with its cause's when it has one. */
export function message(err: unknown): string {
  const e = err as Error;
  const cause = e?.cause instanceof Error ? `: ${e.cause.message}` : "";
  return `${e?.message ?? String(err)}${cause}`;
}

/** Whether an error's text is about a certificate or the TLS handshake. */
export function isCertificateError(text: string): boolean {
  return /certificate|UnknownIssuer|tls|handshake|self.signed|NotValidForName|CertExpired/i.test(
    text,
  );
}

/** The fix for a certificate the TLS handshake rejects. */
export const TLS_FIX = "If the server's certificate is signed by a private CA, give Deno the CA: " +
  "DENO_CERT=/path/to/ca.pem (or DENO_TLS_CA_STORE=system to use the system's store); if the " +
  "name does not match, use the name the certificate is for in the address";
