/**
 * Builds the single-file binaries with `deno compile`: `funcx-endpoint` and `funcx-service`, for
 * x86_64 and aarch64 Linux, into `dist/`. The endpoint binary starts its engine processes as
 * itself (`funcx-endpoint __manager` / `__worker`), so one file is all a login node needs.
 *
 * `deno compile` downloads a runtime (`denort`) for each target from Deno's own server; where
 * that server cannot be reached, point `DENORT_BIN` at a denort binary of this Deno version.
 *
 * Usage: `deno task compile [--target x86_64-unknown-linux-gnu] [--out dist]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;
const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];
const BINARIES = [
  {
    name: "funcx-endpoint",
    entry: "cli/funcx_endpoint.ts",
    // Workers inherit these: the endpoint config's permission set cannot narrow a compiled binary.
    flags: ["--allow-all"],
    include: ["endpoint/engine/manager_main.ts", "endpoint/engine/worker_main.ts"],
  },
  { name: "funcx-service", entry: "cli/funcx_service.ts", flags: ["--allow-all"], include: [] },
];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    target: { type: "string", multiple: true },
    out: { type: "string", default: join(ROOT, "dist") },
  },
});
const targets = values.target?.length ? values.target : TARGETS;
for (const t of targets) {
  if (!TARGETS.includes(t)) {
    console.error(`Unknown target "${t}": use one of ${TARGETS.join(", ")}`);
    Deno.exit(2);
  }
}
await Deno.mkdir(values.out, { recursive: true });

let failed = 0;
for (const target of targets) {
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
    const res = await new Deno.Command(Deno.execPath(), {
      args,
      stdout: "inherit",
      stderr: "piped",
    })
      .output();
    const err = new TextDecoder().decode(res.stderr);
    if (!res.success) {
      failed++;
      console.error(err);
      if (/dl\.deno\.land|error sending request/.test(err)) {
        console.error(
          `Cannot download the ${target} runtime: set DENORT_BIN to a denort ${Deno.version.deno} ` +
            "binary for that target, or build where Deno's download server can be reached",
        );
      }
    }
  }
}
console.log(
  failed ? `${failed} build(s) failed` : `Built ${targets.length * 2} binaries in ${values.out}`,
);
Deno.exit(failed ? 1 : 0);
