/**
 * The self-diagnostic's network checks: the service reachable, the clock against the service's,
 * the login (token), the broker login (or the running daemon's link status), and TLS handshakes.
 *
 * @module
 */
import amqp from "amqplib";
import type { EndpointRegistration, FuncXClient } from "../sdk/client.ts";
import {
  type CheckResult,
  isCertificateError,
  message,
  type SelfDiagnosticOptions,
  TLS_FIX,
} from "./_diagnostic_check.ts";
import { readEndpointId, writeEndpointId } from "./endpoint_dir.ts";
import { readPidFile } from "./pid_file.ts";
import { registerEndpoint } from "./registration.ts";
import { readStatusFile } from "./status_file.ts";

/** `GET /v2/version`: reachable, and a funcX service. */
export async function checkService(address: string, timeoutMs: number): Promise<{
  result: CheckResult;
  date?: Date;
  sentAt: number;
  receivedAt: number;
}> {
  const sentAt = Date.now();
  const fix = `Check funcx_service_address in config.yaml (or FUNCX_SERVICE_ADDRESS): is the ` +
    `service running there, and can this host reach it (firewall, proxy)?`;
  let res: Response;
  try {
    res = await fetch(`${address}/v2/version`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const why = message(err);
    return {
      result: {
        check: "service",
        status: "fail",
        detail: `Cannot reach the service at "${address}": ${why}`,
        fix: isCertificateError(why) ? `${TLS_FIX} (see the tls check)` : fix,
      },
      sentAt,
      receivedAt: Date.now(),
    };
  }
  const receivedAt = Date.now();
  const text = await res.text().catch(() => "");
  const header = res.headers.get("date");
  const date = header ? new Date(header) : undefined;
  const dated = date && !Number.isNaN(date.getTime()) ? { date } : {};
  let version: unknown;
  try {
    version = JSON.parse(text);
  } catch {
    version = undefined;
  }
  if (!res.ok || typeof version !== "string") {
    return {
      result: {
        check: "service",
        status: "fail",
        detail: `"${address}/v2/version" answered ${res.status}, not a funcX service's version`,
        fix: `Point funcx_service_address at the funcX service itself (${fix.slice(6)})`,
      },
      ...dated,
      sentAt,
      receivedAt,
    };
  }
  return {
    result: {
      check: "service",
      status: "pass",
      detail: `The service at "${address}" answers (API ${version})`,
    },
    ...dated,
    sentAt,
    receivedAt,
  };
}

/**
 * The clock check from the service's `Date` header (whole seconds, stamped between `sentAt` and
 * `receivedAt`): the skew is the least difference those bounds allow, so a skew under a second
 * or hidden by the request's own time is never blamed on the clock.
 */
export function checkClock(
  serviceDate: Date,
  sentAt: number,
  receivedAt: number,
  maxSkewS: number,
): CheckResult {
  const earliest = serviceDate.getTime();
  const latest = earliest + 999;
  const skewMs = earliest > receivedAt
    ? earliest - receivedAt
    : latest < sentAt
    ? latest - sentAt
    : 0;
  const skewS = Math.round(skewMs / 100) / 10;
  const which = skewMs > 0 ? "behind" : "ahead of";
  if (Math.abs(skewS) <= maxSkewS) {
    return {
      check: "clock",
      status: "pass",
      detail: skewMs === 0
        ? "This host's clock agrees with the service's (within a second)"
        : `This host's clock is ${Math.abs(skewS)} s ${which} the service's (limit ${maxSkewS} s)`,
    };
  }
  return {
    check: "clock",
    status: "fail",
    detail: `This host's clock is ${Math.abs(skewS)} s ${which} the service's ` +
      `(limit ${maxSkewS} s): token lifetimes, heartbeats and task times go wrong`,
    fix: "Synchronise the clocks of this host and the service's host with NTP " +
      "(systemd-timesyncd, chrony or ntpd), e.g. timedatectl set-ntp true",
  };
}

/** `GET /v2/whoami` with the endpoint's login. */
export async function checkToken(
  makeClient: () => Promise<FuncXClient>,
  timeoutMs: number,
): Promise<{ result: CheckResult; client?: FuncXClient }> {
  const fix = "Log in again: run `funcx-endpoint whoami` on a terminal (device flow), or set " +
    "FUNCX_SDK_CLIENT_ID and FUNCX_SDK_CLIENT_SECRET to a valid API client's credentials " +
    "(funcx-service client create --user <you>); unset FUNCX_SDK_ACCESS_TOKEN if it is stale";
  let client: FuncXClient;
  try {
    client = await makeClient();
  } catch (err) {
    return { result: { check: "token", status: "fail", detail: message(err), fix } };
  }
  try {
    const me = await client.whoami({ signal: AbortSignal.timeout(timeoutMs) });
    return {
      result: {
        check: "token",
        status: "pass",
        detail: `Logged in as "${me.username}"`,
      },
      client,
    };
  } catch (err) {
    return {
      result: {
        check: "token",
        status: "fail",
        detail: `The service refused the login: ${message(err)}`,
        fix,
      },
    };
  }
}

/** Every broker URL of a registration. */
function brokerUrlsOf(reg: EndpointRegistration): string[] {
  const info = reg.task_queue_info;
  return info.connection_urls?.length ? info.connection_urls : [info.connection_url];
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * The broker login: from the running daemon's link status, or else by registering (as `start`
 * does, keeping the id in `endpoint.json`) and logging in to each broker node it names.
 */
export async function checkBroker(
  options: SelfDiagnosticOptions,
  client: FuncXClient,
  timeoutMs: number,
): Promise<{ result: CheckResult; urls: string[] }> {
  const dir = options.endpointDir;
  const pid = await readPidFile(dir);
  if (pid.kind === "running") {
    const status = await readStatusFile(dir);
    if (status?.state === "connected") {
      return {
        result: {
          check: "broker",
          status: "pass",
          detail: `The running daemon (pid ${pid.pid}) is logged in to the broker at ` +
            `${status.broker} since ${status.since}`,
        },
        urls: [],
      };
    }
    return {
      result: {
        check: "broker",
        status: "fail",
        detail: `The running daemon (pid ${pid.pid}) cannot reach the broker` +
          (status ? ` at ${status.broker}: ${status.lastError ?? "no error recorded"}` : ""),
        fix: "Check that the broker runs and this host can reach it; then see the endpoint log " +
          "(stop the endpoint and run self-diagnostic again to test the broker login itself)",
      },
      urls: [],
    };
  }
  let reg: EndpointRegistration;
  try {
    reg = await registerEndpoint(client, {
      name: options.name,
      endpointId: await readEndpointId(dir),
      config: options.config,
    });
    await writeEndpointId(dir, reg.endpoint_id);
  } catch (err) {
    return {
      result: {
        check: "broker",
        status: "fail",
        detail: `Registration, which hands out the broker login, failed: ${message(err)}`,
        fix: "Fix what the message names (a locked or deleted endpoint: unlock it or configure " +
          "a new one); the service's log says more",
      },
      urls: [],
    };
  }
  const urls = brokerUrlsOf(reg);
  const failures: string[] = [];
  for (const url of urls) {
    try {
      const conn = await amqp.connect(url, { timeout: timeoutMs });
      conn.on("error", () => {});
      await conn.close();
    } catch (err) {
      failures.push(`${redact(url)}: ${message(err)}`);
    }
  }
  if (failures.length === 0) {
    return {
      result: {
        check: "broker",
        status: "pass",
        detail: `Logged in to the broker (${urls.map(redact).join(", ")})`,
      },
      urls,
    };
  }
  const refused = failures.some((f) => /ACCESS.REFUSED|403|auth/i.test(f));
  return {
    result: {
      check: "broker",
      status: "fail",
      detail: `Cannot log in to the broker: ${failures.join("; ")}`,
      fix: refused
        ? "The broker refused the login the service handed out: the service's broker settings " +
          "are wrong (--public-amqp-url credentials, or --management-url so it can create " +
          "logins); tell the service's administrator"
        : "The broker cannot be reached from this host at the address the service hands out " +
          "(--public-amqp-url of the service): check the address, the port and any firewall",
    },
    urls,
  };
}

/** A TLS handshake with each `https:`/`amqps:` peer the endpoint uses. */
export async function checkTls(
  serviceAddress: string,
  brokerUrls: readonly string[],
  timeoutMs: number,
): Promise<CheckResult> {
  const peers: Array<{ what: string; hostname: string; port: number }> = [];
  for (
    const [what, raw, defaultPort] of [
      ["service", serviceAddress, 443] as const,
      ...brokerUrls.map((u) => ["broker", u, 5671] as const),
    ]
  ) {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      continue;
    }
    if (u.protocol !== "https:" && u.protocol !== "amqps:") continue;
    const hostname = u.hostname.replace(/^\[|\]$/g, "");
    peers.push({ what, hostname, port: u.port ? Number(u.port) : defaultPort });
  }
  if (peers.length === 0) {
    return {
      check: "tls",
      status: "skip",
      detail: "No TLS configured (the service and the broker are reached without TLS)",
    };
  }
  const failures: string[] = [];
  for (const p of peers) {
    try {
      const conn = await Deno.connectTls({ hostname: p.hostname, port: p.port });
      try {
        await Promise.race([
          conn.handshake(),
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error("handshake timed out")), timeoutMs)
          ),
        ]);
      } finally {
        conn.close();
      }
    } catch (err) {
      failures.push(`${p.what} ${p.hostname}:${p.port}: ${message(err)}`);
    }
  }
  const names = peers.map((p) => `${p.what} ${p.hostname}:${p.port}`).join(", ");
  return failures.length === 0
    ? { check: "tls", status: "pass", detail: `TLS handshakes succeed (${names})` }
    : {
      check: "tls",
      status: "fail",
      detail: `TLS handshake failed: ${failures.join("; ")}`,
      fix: TLS_FIX,
    };
}
