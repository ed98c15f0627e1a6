/**
 * The one version: `deno.json`'s `version` is the version of the SDK (`SDK_VERSION`), of the
 * binaries (`funcx-endpoint version`, `funcx --version`, `funcx-service version`) and of the
 * release tag (`v` + it). Both release workflows run this with the tag they were started by and
 * stop on any disagreement; `tests/version_test.ts` runs it without a tag.
 *
 * Usage: `deno run --allow-read scripts/versions.ts [TAG]`
 *
 * @module
 */
import config from "../deno.json" with { type: "json" };
import { SDK_VERSION } from "../mod.ts";
import { ENDPOINT_VERSION } from "../endpoint/version.ts";
import { VERSION as CLI_VERSION } from "../cli/_version.ts";

/** Every version string the project reports, by where it comes from. */
export function versionStrings(): Record<string, string> {
  return {
    "deno.json version": config.version,
    "SDK_VERSION (mod.ts)": SDK_VERSION,
    "ENDPOINT_VERSION (endpoint/version.ts)": ENDPOINT_VERSION,
    "VERSION of funcx and funcx-service (cli/_version.ts)": CLI_VERSION,
  };
}

/**
 * What disagrees with `deno.json`'s version: the strings of {@linkcode versionStrings}, the
 * release `tag` when given, and download lines in `readme` that name a fixed release instead of
 * the latest one. Empty when all agree.
 */
export function versionProblems(options: { tag?: string; readme?: string } = {}): string[] {
  const want = config.version;
  const problems: string[] = [];
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$/.test(want)) {
    problems.push(`deno.json's version "${want}" is not a semantic version (like 1.2.3)`);
  }
  for (const [where, v] of Object.entries(versionStrings())) {
    if (v !== want) problems.push(`${where} is "${v}", not deno.json's "${want}"`);
  }
  if (options.tag !== undefined && options.tag !== `v${want}`) {
    problems.push(`the tag "${options.tag}" is not "v${want}" (deno.json's version)`);
  }
  for (const m of (options.readme ?? "").matchAll(/releases\/download\/[^\s/"']+/g)) {
    problems.push(
      `README.md downloads from a fixed release (${m[0]}): use releases/latest/download/`,
    );
  }
  return problems;
}

if (import.meta.main) {
  const tag = Deno.args[0];
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const problems = versionProblems({ ...(tag ? { tag } : {}), readme });
  for (const p of problems) console.error(`Version mismatch: ${p}`);
  if (problems.length > 0) Deno.exit(1);
  console.log(`Version ${config.version}${tag ? ` matches the tag ${tag}` : ""}`);
}
