/**
 * Builds the single-file binaries with `deno compile`: `funcx` (the command for shells and cron),
 * `funcx-endpoint` and `funcx-service`, for x86_64 and aarch64 Linux, into `dist/`, then checks
 * each one (`compile/verify.ts`): the ELF machine must be the target's, and on the build host's
 * own architecture the binaries must run as the program (`funcx --version` and a usage error,
 * `funcx-endpoint version` and `configure`, `funcx-service user list`). Any mismatch fails the
 * build. `dist/SHA256SUMS` lists what was built.
 *
 * The endpoint binary starts its engine processes as itself (`funcx-endpoint __manager` /
 * `__worker`), so one file is all a login node needs; its workers sandbox themselves (see
 * `endpoint/engine/command.ts`).
 *
 * `deno compile` needs the Deno runtime (`denort`) of each target, of this Deno's version. It
 * takes it from Deno's cache, `$DENO_DIR/dl/release/v<version>/denort-<target>.zip`, and downloads
 * it from dl.deno.land when it is not there. On a build machine that cannot reach dl.deno.land,
 * copy the archive into the cache first (the build says which file and where from). `DENORT_BIN`
 * (one unzipped runtime) is accepted only for the target its ELF header names.
 *
 * Usage: `deno task compile [--target x86_64-unknown-linux-gnu] [--out dist]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { STANDALONE_FLAGS } from "../endpoint/engine/command.ts";
import { ENDPOINT_VERSION } from "../endpoint/version.ts";
import {
  elfMachine,
  glibcNeeded,
  hostTarget,
  runtimeArchive,
  runtimeArchiveUrl,
  smokeCheckEndpoint,
  smokeCheckFuncx,
  smokeCheckService,
  type Target,
  targetMachine,
  TARGETS,
} from "./verify.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** The binaries, each with its entry point, compile flags, extra files and smoke check. */
export const BINARIES = [
  {
    name: "funcx",
    entry: "cli/funcx.ts",
    flags: ["--allow-all"],
    include: [],
    smoke: (path: string) => smokeCheckFuncx([path], ENDPOINT_VERSION),
  },
  {
    name: "funcx-endpoint",
    entry: "cli/funcx_endpoint.ts",
    // Workers run with these and narrow their tasks to the endpoint config's permission set.
    flags: STANDALONE_FLAGS,
    include: [
      "endpoint/engine/manager_main.ts",
      "endpoint/engine/worker_main.ts",
      "endpoint/engine/sandbox_worker.ts",
    ],
    smoke: (path: string) => smokeCheckEndpoint([path], ENDPOINT_VERSION),
  },
  {
    name: "funcx-service",
    entry: "cli/funcx_service.ts",
    flags: ["--allow-all"],
    include: ["service/_wal_checkpointer_worker.ts"],
    smoke: (path: string) => smokeCheckService([path]),
  },
];

if (import.meta.main) await main();

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      target: { type: "string", multiple: true },
      out: { type: "string", default: join(ROOT, "dist") },
    },
  });
  const targets = (values.target?.length ? values.target : [...TARGETS]) as Target[];
  for (const t of targets) {
    if (!(TARGETS as readonly string[]).includes(t)) {
      console.error(`Unknown target "${t}": use one of ${TARGETS.join(", ")}`);
      Deno.exit(2);
    }
  }
  await Deno.mkdir(values.out, { recursive: true });

  const version = Deno.version.deno;
  const denoDir: string = JSON.parse(
    new TextDecoder().decode(
      (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output()).stdout,
    ),
  ).denoDir;

  async function reachable(url: string): Promise<boolean> {
    try {
      const res = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(10_000) });
      await res.body?.cancel();
      return true;
    } catch {
      return false;
    }
  }

  /** Why `deno compile` cannot get `target`'s runtime here, or undefined when it can. */
  async function runtimeProblem(target: Target): Promise<string | undefined> {
    const denort = Deno.env.get("DENORT_BIN");
    if (denort) {
      // deno compile uses DENORT_BIN whatever --target says, so it must be this target's.
      const machine = await elfMachine(denort).catch((e) => `unreadable (${e.message})`);
      if (machine !== targetMachine(target)) {
        return `DENORT_BIN (${denort}) is ${machine}, not ${targetMachine(target)}: it would ` +
          `make a ${target} binary that cannot run there. Unset DENORT_BIN for this target and put ` +
          `${runtimeArchiveUrl(version, target)} at ${runtimeArchive(denoDir, version, target)}`;
      }
      if (target === hostTarget()) {
        const out = await new Deno.Command(denort, { args: ["--version"], stdin: "null" }).output()
          .then((r) => new TextDecoder().decode(r.stdout), () => "");
        if (/^deno \d/.test(out)) {
          return `DENORT_BIN (${denort}) is the deno command-line program, not the denort ` +
            "runtime: a binary built on it would only be the deno CLI. Point it at the denort " +
            `binary from ${runtimeArchiveUrl(version, target)}`;
        }
      }
      return undefined;
    }
    const archive = runtimeArchive(denoDir, version, target);
    if (await Deno.stat(archive).then(() => true, () => false)) return undefined;
    const url = runtimeArchiveUrl(version, target);
    if (await reachable(url)) return undefined;
    return `The ${target} runtime of Deno ${version} is not in Deno's cache and ${
      new URL(url).host
    } cannot be reached from here. On a machine that can, download\n    ${url}\n  and copy it ` +
      `(still zipped) to\n    ${archive}\n  then build again (the cache is $DENO_DIR, here ${denoDir})`;
  }

  async function sha256(path: string): Promise<string> {
    const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const problems: string[] = [];
  const sums: string[] = [];
  for (const target of targets) {
    const missing = await runtimeProblem(target);
    if (missing) {
      problems.push(`${target}: ${missing}`);
      continue;
    }
    for (const bin of BINARIES) {
      const output = join(values.out, `${bin.name}-${target}`);
      const args = [
        "compile",
        ...bin.flags,
        `--config=${join(ROOT, "deno.json")}`,
        `--target=${target}`,
        `--output=${output}`,
        ...bin.include.flatMap((f) => ["--include", join(ROOT, f)]),
        join(ROOT, bin.entry),
      ];
      console.log(`deno ${args.join(" ")}`);
      const res = await new Deno.Command(Deno.execPath(), { args, stderr: "piped" }).output();
      if (!res.success) {
        problems.push(
          `${bin.name}-${target}: deno compile failed:\n${new TextDecoder().decode(res.stderr)}`,
        );
        continue;
      }
      try {
        const machine = await elfMachine(output);
        if (machine !== targetMachine(target)) {
          throw new Error(`it is a ${machine} executable, not ${targetMachine(target)}`);
        }
        if (target === hostTarget()) await bin.smoke(output);
        const glibc = await glibcNeeded(output);
        sums.push(`${await sha256(output)}  ${bin.name}-${target}`);
        console.log(
          `  ok: ${machine}, needs glibc ${glibc ?? "(none found)"} or newer` +
            (target === hostTarget()
              ? ", ran its smoke check"
              : " (not run: another architecture)"),
        );
      } catch (err) {
        problems.push(`${bin.name}-${target}: ${(err as Error).message}`);
        await Deno.remove(output).catch(() => {});
      }
    }
  }
  if (sums.length > 0) {
    await Deno.writeTextFile(join(values.out, "SHA256SUMS"), sums.join("\n") + "\n");
  }
  for (const p of problems) console.error(`FAILED ${p}`);
  console.log(
    problems.length
      ? `${problems.length} problem(s); ${sums.length} binaries built and checked in ${values.out}`
      : `Built and checked ${sums.length} binaries in ${values.out} (SHA256SUMS written)`,
  );
  Deno.exit(problems.length ? 1 : 0);
}
