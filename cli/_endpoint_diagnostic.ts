/**
 * `funcx-endpoint self-diagnostic [NAME] [--json]`: runs the endpoint's checks
 * (`endpoint/self_diagnostic.ts`) and prints each with its fix; exit 0 when none failed, 1
 * otherwise.
 *
 * @module
 */
import { endpointDir } from "../endpoint/endpoint_dir.ts";
import { allPassed, type CheckResult, selfDiagnostic } from "../endpoint/self_diagnostic.ts";
import { CliExit, type CommonOptions, EXIT } from "./_endpoint_exit.ts";
import { loginClient } from "./_endpoint_login.ts";
import { loadEndpointConfig } from "./_endpoint_start.ts";

/** Flags of `self-diagnostic`. */
export interface DiagnosticFlags {
  /** Print one JSON document instead of lines. */
  json: boolean;
  /** `--max-clock-skew` (seconds). */
  maxClockSkew?: string;
  /** `--min-free-disk` (MiB). */
  minFreeDisk?: string;
}

function numberFlag(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) {
    throw new CliExit(EXIT.DATAERR, `Invalid ${flag} "${value}": expected a number >= 0`);
  }
  return n;
}

/** The lines a person reads: one per check, with the fix under a failure. */
export function formatChecks(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.check.length));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.status.toUpperCase().padEnd(4)}  ${r.check.padEnd(width)}  ${r.detail}`);
    if (r.fix) lines.push(`${" ".repeat(width + 8)}fix: ${r.fix}`);
  }
  return lines.join("\n");
}

/** `self-diagnostic [NAME]`; returns the exit code. */
export async function selfDiagnosticCommand(
  name: string,
  flags: DiagnosticFlags,
  common: CommonOptions,
): Promise<number> {
  const maxClockSkewS = numberFlag("--max-clock-skew", flags.maxClockSkew, 30);
  const minFreeMiB = numberFlag("--min-free-disk", flags.minFreeDisk, 100);
  const dir = endpointDir(common.configDir, name);
  const config = await loadEndpointConfig(name, dir, {});
  const results = await selfDiagnostic({
    name,
    endpointDir: dir,
    config,
    client: async () =>
      (await loginClient(config.funcx_service_address, {
        configDir: common.configDir,
        interactive: false,
      })).client,
    maxClockSkewS,
    minFreeMiB,
  });
  const ok = allPassed(results);
  if (flags.json) {
    console.log(JSON.stringify({ endpoint: name, ok, checks: results }));
  } else {
    console.log(formatChecks(results));
    const failed = results.filter((r) => r.status === "fail").length;
    console.log(
      ok
        ? `All checks passed for endpoint "${name}"`
        : `${failed} check${failed === 1 ? "" : "s"} failed for endpoint "${name}"`,
    );
  }
  return ok ? EXIT.OK : EXIT.ERROR;
}
