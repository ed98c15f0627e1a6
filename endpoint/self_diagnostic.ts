/**
 * `funcx-endpoint self-diagnostic`: the checks that tell an endpoint's owner why it cannot work
 * here, each with the fix to try: the service reachable, the clock against the service's,
 * the login (token) valid, the broker login, TLS where the config uses it, disk space for the
 * result journal, and the commands its provider, MPI mode and container runtime run. A check
 * whose prerequisite failed is skipped (and says which). It reads the config and talks to the
 * service and the broker as `start` does, and changes nothing a running daemon relies on: with
 * the daemon up, the broker check reads the daemon's own link status instead of registering
 * (which would rotate the broker password).
 *
 * @module
 */
import amqp from "amqplib";
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import type { EndpointRegistration, FuncXClient } from "../sdk/client.ts";
import type { EndpointConfig } from "./config.ts";
import { readEndpointId, writeEndpointId } from "./endpoint_dir.ts";
import { readPidFile } from "./pid_file.ts";
import { registerEndpoint } from "./registration.ts";
import { readStatusFile } from "./status_file.ts";

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

/** Whether no check failed (a skipped one is not applicable, or after one that failed). */
export function allPassed(results: readonly CheckResult[]): boolean {
  return results.every((r) => r.status !== "fail");
}

function skippedAfter(check: CheckName, failed: CheckName): CheckResult {
  return { check, status: "skip", detail: `Not checked: the ${failed} check failed` };
}

function message(err: unknown): string {
  const e = err as Error;
  const cause = e?.cause instanceof Error ? `: ${e.cause.message}` : "";
  return `${e?.message ?? String(err)}${cause}`;
}

function isCertificateError(text: string): boolean {
  return /certificate|UnknownIssuer|tls|handshake|self.signed|NotValidForName|CertExpired/i.test(
    text,
  );
}

const TLS_FIX = "If the server's certificate is signed by a private CA, give Deno the CA: " +
  "DENO_CERT=/path/to/ca.pem (or DENO_TLS_CA_STORE=system to use the system's store); if the " +
  "name does not match, use the name the certificate is for in the address";

/** Runs every check; never throws for what it checks. */
export async function selfDiagnostic(options: SelfDiagnosticOptions): Promise<CheckResult[]> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const address = options.config.funcx_service_address.replace(/\/+$/, "");
  const results: CheckResult[] = [];

  const service = await checkService(address, timeoutMs);
  results.push(service.result);
  results.push(
    service.date
      ? checkClock(service.date, service.sentAt, service.receivedAt, options.maxClockSkewS ?? 30)
      : service.result.status === "fail"
      ? skippedAfter("clock", "service")
      : { check: "clock", status: "skip", detail: "The service sent no Date header" },
  );

  let client: FuncXClient | undefined;
  if (service.result.status === "fail") {
    results.push(skippedAfter("token", "service"));
  } else {
    const token = await checkToken(options.client, timeoutMs);
    results.push(token.result);
    client = token.client;
  }

  let brokerUrls: string[] = [];
  if (!client) {
    results.push(skippedAfter("broker", service.result.status === "fail" ? "service" : "token"));
  } else {
    const broker = await checkBroker(options, client, timeoutMs);
    results.push(broker.result);
    brokerUrls = broker.urls;
  }

  results.push(await checkTls(address, brokerUrls, timeoutMs));
  results.push(await checkDisk(options.endpointDir, options.minFreeMiB ?? 100));
  results.push(await checkCommands(options.config, options.path ?? Deno.env.get("PATH") ?? ""));
  return results;
}

/** `GET /v2/version`: reachable, and a funcX service. */
async function checkService(address: string, timeoutMs: number): Promise<{
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
async function checkToken(
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
async function checkBroker(
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
async function checkTls(
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

/** Free space where the result journal lives (`<endpoint dir>/result_journal`). */
async function checkDisk(endpointDir: string, minFreeMiB: number): Promise<CheckResult> {
  const journal = join(endpointDir, "result_journal");
  let where = journal;
  let fs;
  try {
    fs = await statfs(journal);
  } catch {
    where = endpointDir;
    try {
      fs = await statfs(endpointDir);
    } catch (err) {
      return {
        check: "disk",
        status: "fail",
        detail: `Cannot read the free space of "${endpointDir}": ${message(err)}`,
        fix: "Check that the endpoint's directory exists and is readable",
      };
    }
  }
  const freeMiB = Math.floor((Number(fs.bavail) * Number(fs.bsize)) / 2 ** 20);
  if (freeMiB >= minFreeMiB) {
    return {
      check: "disk",
      status: "pass",
      detail: `${freeMiB} MiB free for the result journal in "${where}" (at least ${minFreeMiB})`,
    };
  }
  return {
    check: "disk",
    status: "fail",
    detail: `Only ${freeMiB} MiB free for the result journal in "${where}" (need ${minFreeMiB}): ` +
      "results waiting for the broker are kept there",
    fix: "Free space on that file system, or move the endpoint's directory " +
      "(funcx-endpoint -c <dir> / FUNCX_CONFIG_DIR) to a file system with room",
  };
}

/** The programs the config makes the endpoint run, each with why. */
export function requiredCommands(config: EndpointConfig): Array<{ program: string; why: string }> {
  const e = config.engine;
  const out: Array<{ program: string; why: string }> = [];
  const provider = e.provider.type;
  if (provider === "slurm") {
    for (const p of ["sbatch", "squeue", "scancel"]) {
      out.push({ program: p, why: "engine.provider.type: slurm" });
    }
    if (e.provider.launcher === "srun") {
      out.push({ program: "srun", why: "provider.launcher: srun" });
    }
  } else if (provider === "gridengine") {
    for (const p of ["qsub", "qstat", "qdel"]) {
      out.push({ program: p, why: "engine.provider.type: gridengine" });
    }
    if (e.provider.launcher === "qrsh") {
      out.push({ program: "qrsh", why: "provider.launcher: qrsh" });
    }
  }
  if (e.mpi) out.push({ program: e.mpi.launcher, why: `engine.mpi.launcher: ${e.mpi.launcher}` });
  if (e.container_type && e.container_type !== "custom") {
    out.push({ program: e.container_type, why: `engine.container_type: ${e.container_type}` });
  } else if (e.container_type === "custom" && e.container_launch_cmd) {
    const first = e.container_launch_cmd.trim().split(/\s+/)[0];
    if (first && !first.includes("{")) {
      out.push({ program: first, why: "engine.container_launch_cmd" });
    }
  }
  return out;
}

async function findProgram(program: string, path: string): Promise<string | undefined> {
  const dirs = program.includes("/") ? [""] : path.split(":").filter((d) => d !== "");
  for (const d of dirs) {
    const file = d ? join(d, program) : program;
    try {
      const st = await Deno.stat(file);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Each program of {@linkcode requiredCommands} on `path`. */
async function checkCommands(config: EndpointConfig, path: string): Promise<CheckResult> {
  const needed = requiredCommands(config);
  if (needed.length === 0) {
    return {
      check: "commands",
      status: "skip",
      detail: "The config runs no outside commands (local provider, no MPI, no containers)",
    };
  }
  const missing: string[] = [];
  const found: string[] = [];
  for (const n of needed) {
    const at = await findProgram(n.program, path);
    if (at) found.push(at);
    else missing.push(`${n.program} (for ${n.why})`);
  }
  if (missing.length === 0) {
    return { check: "commands", status: "pass", detail: `Found ${found.join(", ")}` };
  }
  return {
    check: "commands",
    status: "fail",
    detail: `Not on PATH: ${missing.join(", ")}`,
    fix: "Load the scheduler's, MPI's or container runtime's environment before starting the " +
      "endpoint (e.g. `module load slurm`, or add its bin directory to PATH), or install it; " +
      "or change the config so it does not need it",
  };
}
