/**
 * `deno task compile` checks what it builds: the ELF machine, the glibc the binary needs, and a
 * smoke run of each binary on the build host's architecture. `deno compile` cannot fetch its
 * runtime here, so the smoke checks run against this Deno standing in for the binaries, and the
 * build is tried with runtimes it must refuse.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  elfMachine,
  glibcNeeded,
  runtimeArchive,
  smokeCheckEndpoint,
  smokeCheckFuncx,
  smokeCheckService,
} from "../compile/verify.ts";
import { BINARIES } from "../compile/build.ts";
import { standInCommand } from "../endpoint/engine/command.ts";
import { ENDPOINT_VERSION } from "../endpoint/version.ts";
import { denoRunArgs } from "./harness/process.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("compile: the ELF machine and glibc of an executable are read from the file", async () => {
  assert.equal(await elfMachine(Deno.execPath()), Deno.build.arch);
  assert.match((await glibcNeeded(Deno.execPath())) ?? "", /^2\.\d+$/);
  await assert.rejects(elfMachine(join(ROOT, "deno.json")), /is not an ELF executable/);
  assert.equal(
    runtimeArchive("/cache", "2.9.6", "aarch64-unknown-linux-gnu"),
    "/cache/dl/release/v2.9.6/denort-aarch64-unknown-linux-gnu.zip",
  );
});

Deno.test("compile: the smoke checks pass the program and refuse a plain Deno runtime", async () => {
  await smokeCheckEndpoint(standInCommand(), ENDPOINT_VERSION);
  await smokeCheckService([Deno.execPath(), ...denoRunArgs("cli/funcx_service.ts", [])]);
  await assert.rejects(
    smokeCheckEndpoint([Deno.execPath()], ENDPOINT_VERSION),
    new RegExp(
      `\`funcx-endpoint version\` should print ${ENDPOINT_VERSION.replaceAll(".", "\\.")}`,
    ),
  );
  await assert.rejects(smokeCheckService([Deno.execPath()]), /`funcx-service user list`/);
  await smokeCheckFuncx([Deno.execPath(), ...denoRunArgs("cli/funcx.ts", [])], ENDPOINT_VERSION);
  await assert.rejects(smokeCheckFuncx([Deno.execPath()], ENDPOINT_VERSION), /`funcx --version`/);
});

Deno.test("compile: the build knows the three binaries and their entry points", async () => {
  assert.deepEqual(BINARIES.map((b) => b.name), ["funcx", "funcx-endpoint", "funcx-service"]);
  for (const b of BINARIES) await Deno.stat(join(ROOT, b.entry));
  assert.equal(BINARIES.find((b) => b.name === "funcx")?.entry, "cli/funcx.ts");
});

Deno.test("compile: a runtime for the wrong machine, or the deno CLI as runtime, fails the build", async () => {
  const out = await Deno.makeTempDir();
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, "compile/build.ts"), "--out", out],
    env: { DENORT_BIN: Deno.execPath() },
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(res.stderr);
  assert.equal(res.code, 1, stderr);
  const other = Deno.build.arch === "x86_64" ? "aarch64" : "x86_64";
  assert.match(stderr, /is the deno command-line program, not the denort runtime/);
  assert.match(stderr, new RegExp(`is ${Deno.build.arch}, not ${other}`));
  assert.deepEqual([...Deno.readDirSync(out)], []);
  await Deno.remove(out, { recursive: true });
});
