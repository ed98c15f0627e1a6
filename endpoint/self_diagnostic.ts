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
import type { FuncXClient } from "../sdk/client.ts";
import type { CheckName, CheckResult, SelfDiagnosticOptions } from "./_diagnostic_check.ts";
import { checkCommands, checkDisk } from "./_diagnostic_host.ts";
import {
  checkBroker,
  checkClock,
  checkService,
  checkTls,
  checkToken,
} from "./_diagnostic_network.ts";

export type { CheckName, CheckResult, SelfDiagnosticOptions } from "./_diagnostic_check.ts";
export { requiredCommands } from "./_diagnostic_host.ts";
export { checkClock } from "./_diagnostic_network.ts";

/** Whether no check failed (a skipped one is not applicable, or after one that failed). */
export function allPassed(results: readonly CheckResult[]): boolean {
  return results.every((r) => r.status !== "fail");
}

function skippedAfter(check: CheckName, failed: CheckName): CheckResult {
  return { check, status: "skip", detail: `Not checked: the ${failed} check failed` };
}

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
