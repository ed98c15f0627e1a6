/**
 * What a site administrator sets up before a multi-user endpoint can run, done for real: local
 * accounts made with `useradd` (and removed with `userdel -r`), and an install of the endpoint
 * that every account can read and run (a copy of the Deno executable, the source tree and a
 * module cache filled as root, `chmod -R a+rX`, under a fresh directory in `/tmp`). The Deno in
 * use and its cache live under `/root` (mode 0700), where a switched process cannot look.
 * Needs root.
 *
 * @module
 */
import { join } from "node:path";
import { alive, output } from "./_os.ts";
import type { LocalAccount } from "../../endpoint/identity_map.ts";
import { lookupAccount } from "../../endpoint/identity_map.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Prefix of every account the tests make, so leftovers of an aborted run can be found. */
export const TEST_ACCOUNT_PREFIX = "fxmu";

/** The comment (GECOS) of test accounts: it names the test process that made them. */
const OWNER_MARK = "funcx test, pid ";

/**
 * Removes test accounts (and install directories) left by an earlier run that was killed: those
 * whose making process is gone. Another test run's live accounts are left alone.
 */
export async function removeLeftoverAccounts(): Promise<string[]> {
  const passwd = await Deno.readTextFile("/etc/passwd");
  const names: string[] = [];
  for (const line of passwd.split("\n")) {
    const [name = "", , , , gecos = ""] = line.split(":");
    if (!name.startsWith(TEST_ACCOUNT_PREFIX) || !gecos.startsWith(OWNER_MARK)) continue;
    if (alive(Number(gecos.slice(OWNER_MARK.length)))) continue;
    names.push(name);
  }
  for (const name of names) await removeAccount(name);
  for (const e of Deno.readDirSync("/tmp")) {
    const m = /^funcx-site-(\d+)-/.exec(e.name);
    if (m && e.isDirectory && !alive(Number(m[1]))) {
      await Deno.remove(join("/tmp", e.name), { recursive: true }).catch(() => {});
    }
  }
  return names;
}

/** Pids of the processes running as `uid`. */
function processesOf(uid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${e.name}/status`);
      if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) === uid) out.push(Number(e.name));
    } catch {
      // exited
    }
  }
  return out;
}

/** Kills what still runs as the (test) account, by pid, and removes it with its home. */
export async function removeAccount(name: string): Promise<void> {
  const account = await lookupAccount(name);
  if (account && account.uid !== 0) {
    for (const pid of processesOf(account.uid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
  await new Deno.Command("userdel", { args: ["-r", "-f", name], stderr: "null" }).output();
}

/** Pids of live processes running as `uid` (a test's check that nothing is left). */
export { processesOf };

/** Local accounts made for one test; dispose to remove them. */
export interface TestAccounts extends AsyncDisposable {
  accounts: LocalAccount[];
}

/**
 * Makes `count` local accounts named `<prefix><random><a|b|...>`, each with a private home
 * (mode 0700).
 */
export async function createAccounts(count: number): Promise<TestAccounts> {
  const tag = crypto.randomUUID().slice(0, 6);
  const accounts: LocalAccount[] = [];
  const names: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const name = `${TEST_ACCOUNT_PREFIX}${tag}${String.fromCharCode(97 + i)}`;
      await output("useradd", ["-m", "-s", "/bin/sh", "-c", `${OWNER_MARK}${Deno.pid}`, name]);
      names.push(name);
      const account = await lookupAccount(name);
      if (!account) throw new Error(`useradd made "${name}" but getent cannot find it`);
      await Deno.chmod(account.home, 0o700);
      accounts.push(account);
    }
  } catch (err) {
    for (const n of names) await removeAccount(n);
    throw err;
  }
  return {
    accounts,
    async [Symbol.asyncDispose]() {
      for (const n of names) await removeAccount(n);
    },
  };
}

/** A world-readable install of the endpoint. */
export interface SiteInstall extends AsyncDisposable {
  dir: string;
  /** `user_endpoints.command` for the multi-user endpoint's config. */
  command: string[];
  /** `user_endpoints.env`: the install's module cache. */
  env: Record<string, string>;
}

/** The Deno cache this process uses (`deno info`: `DENO_DIR` or its default). */
export async function currentDenoDir(): Promise<string> {
  const out = await output(Deno.execPath(), ["info", "--json"]);
  return String(JSON.parse(out).denoDir);
}

/**
 * Builds an install as a site would: the Deno executable, the endpoint's sources and a module
 * cache filled as root, made readable (and the executable runnable) by everybody.
 */
export async function buildSiteInstall(): Promise<SiteInstall> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: `funcx-site-${Deno.pid}-` });
  try {
    const app = join(dir, "app");
    await Deno.mkdir(app);
    for (const part of ["endpoint", "sdk", "cli", "deno.json", "deno.lock", "mod.ts"]) {
      await output("cp", ["-r", join(ROOT, part), app]);
    }
    const deno = join(dir, "deno");
    await Deno.copyFile(Deno.execPath(), deno);
    const denoDir = join(dir, "deno_dir");
    // npm packages from this machine's cache, so filling the install needs no network.
    await Deno.mkdir(denoDir);
    await output("cp", ["-r", join(await currentDenoDir(), "npm"), denoDir]).catch(() => {});
    const cache = await new Deno.Command(deno, {
      args: [
        "cache",
        "--quiet",
        `--config=${join(app, "deno.json")}`,
        join(app, "cli/funcx_endpoint.ts"),
        join(app, "endpoint/engine/manager_main.ts"),
        join(app, "endpoint/engine/worker_main.ts"),
        join(app, "endpoint/user_endpoint_main.ts"),
      ],
      env: { DENO_DIR: denoDir },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!cache.success) {
      throw new Error(`Cannot fill the install's cache: ${new TextDecoder().decode(cache.stderr)}`);
    }
    await output("chmod", ["-R", "a+rX", dir]);
    await Deno.chmod(dir, 0o755);
    return {
      dir,
      command: [
        deno,
        "run",
        "--quiet",
        "-A",
        `--config=${join(app, "deno.json")}`,
        join(
          app,
          "cli/funcx_endpoint.ts",
        ),
      ],
      env: { DENO_DIR: denoDir },
      async [Symbol.asyncDispose]() {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
    };
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}
