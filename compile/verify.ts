/**
 * Checks that a `deno compile` build is what was asked for: the machine in the ELF header, the
 * glibc it needs, and, for the build host's own architecture, that the binary runs as the program
 * (`funcx --version` and a usage error, `funcx-endpoint version` and `configure`,
 * `funcx-service user list`) and not as a plain Deno
 * runtime. `compile/build.ts` runs these after each build; the release workflow runs the build.
 *
 * @module
 */
import { join } from "node:path";

/** The Linux targets the binaries are built for. */
export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;
/** One of {@linkcode TARGETS}. */
export type Target = (typeof TARGETS)[number];

const MACHINES: Record<number, string> = { 0x3e: "x86_64", 0xb7: "aarch64" };

/** The CPU a target runs on: `x86_64` or `aarch64`. */
export function targetMachine(target: string): string {
  return target.split("-")[0]!;
}

/** The target this machine can run. */
export function hostTarget(): Target {
  return Deno.build.arch === "aarch64" ? "aarch64-unknown-linux-gnu" : "x86_64-unknown-linux-gnu";
}

/**
 * The CPU an ELF executable is for, from its header (`x86_64`, `aarch64`, or `machine 0x..`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { elfMachine } from "./verify.ts";
 * assert.equal(await elfMachine(Deno.execPath()), Deno.build.arch);
 * ```
 */
export async function elfMachine(path: string): Promise<string> {
  const file = await Deno.open(path);
  try {
    const head = new Uint8Array(20);
    let at = 0;
    while (at < head.length) {
      const n = await file.read(head.subarray(at));
      if (n === null) break;
      at += n;
    }
    if (at < 20 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) {
      throw new Error(`${path} is not an ELF executable`);
    }
    // e_machine: 2 bytes at offset 18, in the file's byte order (EI_DATA: 1 little, 2 big).
    const machine = head[5] === 2 ? (head[18]! << 8) | head[19]! : head[18]! | (head[19]! << 8);
    return MACHINES[machine] ?? `machine 0x${machine.toString(16)}`;
  } finally {
    file.close();
  }
}

/**
 * The newest glibc symbol version an executable refers to: the oldest glibc it runs on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { glibcNeeded } from "./verify.ts";
 * assert.match((await glibcNeeded(Deno.execPath())) ?? "", /^2\.\d+$/);
 * ```
 */
export async function glibcNeeded(path: string): Promise<string | undefined> {
  const text = new TextDecoder("latin1").decode(await Deno.readFile(path));
  let best: number[] | undefined;
  for (const m of text.matchAll(/GLIBC_(2)\.(\d+)(?:\.(\d+))?\0/g)) {
    const v = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
    if (!best || v[1]! > best[1]! || (v[1] === best[1] && v[2]! > best[2]!)) best = v;
  }
  return best && `${best[0]}.${best[1]}${best[2] ? `.${best[2]}` : ""}`;
}

/** Where `deno compile` looks for a target's runtime before downloading it. */
export function runtimeArchive(denoDir: string, version: string, target: string): string {
  return join(denoDir, "dl", "release", `v${version}`, `denort-${target}.zip`);
}

/** Where the runtime archive of a target can be downloaded, on a machine that reaches it. */
export function runtimeArchiveUrl(version: string, target: string): string {
  return `https://dl.deno.land/release/v${version}/denort-${target}.zip`;
}

interface Ran {
  code: number;
  out: string;
}

async function run(argv: readonly string[], env: Record<string, string>): Promise<Ran> {
  const res = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    env,
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return { code: res.code, out: (dec.decode(res.stdout) + dec.decode(res.stderr)).trim() };
}

/**
 * Runs a built `funcx-endpoint` (`argv`: its command line) as a user would on first use:
 * `version` must print the endpoint's version and `configure` must write a config in a fresh
 * directory. Throws, saying what it saw, when either fails: for example when the build came out as
 * a plain Deno runtime.
 */
export async function smokeCheckEndpoint(argv: readonly string[], version: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "funcx-smoke-" });
  try {
    const env = { FUNCX_CONFIG_DIR: join(dir, "config"), HOME: dir, NO_COLOR: "1" };
    const v = await run([...argv, "version"], env);
    if (v.code !== 0 || !v.out.includes(version)) {
      throw new Error(
        `\`funcx-endpoint version\` should print ${version}; it exited ${v.code} and printed: ` +
          (v.out.slice(0, 400) || "(nothing)"),
      );
    }
    const c = await run([...argv, "configure", "smoke"], env);
    const config = join(dir, "config", "smoke", "config.yaml");
    const written = await Deno.stat(config).then((s) => s.isFile, () => false);
    if (c.code !== 0 || !written) {
      throw new Error(
        `\`funcx-endpoint configure smoke\` should write ${config}; it exited ${c.code} and ` +
          `printed: ${c.out.slice(0, 400) || "(nothing)"}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs a built `funcx` (`argv`: its command line): `--version` must print `version`, and `run`
 * without what to run must be refused as bad usage (exit 64) before any network use.
 */
export async function smokeCheckFuncx(argv: readonly string[], version: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "funcx-smoke-" });
  try {
    const env = { FUNCX_CONFIG_DIR: join(dir, "config"), HOME: dir, NO_COLOR: "1" };
    const v = await run([...argv, "--version"], env);
    if (v.code !== 0 || v.out !== version) {
      throw new Error(
        `\`funcx --version\` should print ${version}; it exited ${v.code} and printed: ` +
          (v.out.slice(0, 400) || "(nothing)"),
      );
    }
    const u = await run([...argv, "run", "--json"], env);
    if (u.code !== 64 || !u.out.includes('"code":"usage"')) {
      throw new Error(
        `\`funcx run --json\` with nothing to run should exit 64 with a usage error; it exited ` +
          `${u.code} and printed: ${u.out.slice(0, 400) || "(nothing)"}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs a built `funcx-service` with a fresh SQLite store: `user list` must succeed. */
export async function smokeCheckService(argv: readonly string[]): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "funcx-smoke-" });
  try {
    const r = await run([...argv, "user", "list", "--database", join(dir, "store.db")], {
      HOME: dir,
      NO_COLOR: "1",
    });
    if (r.code !== 0) {
      throw new Error(
        `\`funcx-service user list\` on a fresh store exited ${r.code} and printed: ` +
          (r.out.slice(0, 400) || "(nothing)"),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
