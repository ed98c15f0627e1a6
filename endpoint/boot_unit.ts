/**
 * `enable-on-boot` and `disable-on-boot`: a systemd unit that runs `funcx-endpoint start NAME
 * --foreground` at boot, as a user unit (`~/.config/systemd/user/`, started by the user's
 * manager: at boot only with lingering on) or a system unit (`/etc/systemd/system/`, with
 * `User=`). The unit is written whether or not systemd runs here; `systemctl daemon-reload` and
 * `enable`/`disable` are called only where it does, and the caller is told what was done.
 *
 * @module
 */
import { isAbsolute, join, resolve } from "node:path";

/** Where a unit goes and who runs it. */
export interface BootUnitTarget {
  /** A user unit (the user's manager) rather than a system unit. */
  user: boolean;
  /** The account a system unit runs as (`User=`); unused for a user unit. */
  account: string;
  /** The directory of the unit file. */
  unitDir: string;
}

/** Options of {@linkcode bootUnitText}. */
export interface BootUnitOptions {
  /** The endpoint's name. */
  name: string;
  /** Absolute endpoints directory (`-c`), passed as `FUNCX_CONFIG_DIR`. */
  configDir: string;
  /** The command line before the subcommand (the binary, or `deno run ... funcx_endpoint.ts`). */
  command: readonly string[];
  /** User or system unit, and its account. */
  target: BootUnitTarget;
}

/** The unit's file name: `funcx-endpoint-NAME.service`. */
export function unitName(name: string): string {
  return `funcx-endpoint-${name}.service`;
}

/**
 * Where units go: `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`) for a user
 * unit, `/etc/systemd/system` for a system unit.
 */
export function unitDirectory(user: boolean, env: Record<string, string | undefined>): string {
  if (!user) return "/etc/systemd/system";
  const xdg = env["XDG_CONFIG_HOME"];
  if (xdg && isAbsolute(xdg)) return join(xdg, "systemd", "user");
  const home = env["HOME"];
  if (!home) {
    throw new Error("Cannot find the user unit directory: HOME is not set (set XDG_CONFIG_HOME)");
  }
  return join(home, ".config", "systemd", "user");
}

/**
 * One word of a systemd command line: quoted when it holds blanks or quotes, with `%` and `$`
 * doubled so systemd neither expands specifiers nor variables in it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { systemdWord } from "./boot_unit.ts";
 * assert.equal(systemdWord("/opt/funcx endpoint/bin"), '"/opt/funcx endpoint/bin"');
 * assert.equal(systemdWord("50%"), "50%%");
 * ```
 */
export function systemdWord(word: string): string {
  const escaped = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (escaped !== "" && !/[\s"'\\]/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * The unit's text. It runs the endpoint in the foreground (systemd keeps it, restarts it when it
 * fails) and stops it with SIGTERM to the daemon alone, which drains its workers; credentials can
 * go in the optional `<endpoint dir>/boot.env` (`FUNCX_SDK_CLIENT_ID=...`, mode 0600).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bootUnitText } from "./boot_unit.ts";
 * const text = bootUnitText({
 *   name: "gpu",
 *   configDir: "/home/ada/.funcx",
 *   command: ["/usr/local/bin/funcx-endpoint"],
 *   target: { user: false, account: "ada", unitDir: "/etc/systemd/system" },
 * });
 * assert.match(text, /^ExecStart=\/usr\/local\/bin\/funcx-endpoint start gpu --foreground$/m);
 * assert.match(text, /^User=ada$/m);
 * ```
 */
export function bootUnitText(options: BootUnitOptions): string {
  const { name, target } = options;
  if (!isAbsolute(options.configDir)) {
    throw new TypeError(`The endpoints directory must be absolute, not "${options.configDir}"`);
  }
  const exec = (args: string[]) => [...options.command, ...args].map(systemdWord).join(" ");
  const envFile = join(options.configDir, name, "boot.env");
  return [
    "# Written by funcx-endpoint enable-on-boot; remove with funcx-endpoint disable-on-boot.",
    "[Unit]",
    `Description=funcX endpoint ${name}`,
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    ...(target.user ? [] : [`User=${systemdWord(target.account)}`]),
    `Environment=${systemdWord(`FUNCX_CONFIG_DIR=${options.configDir}`)}`,
    // A path setting takes the rest of the line as it is: only specifiers need escaping.
    `EnvironmentFile=-${envFile.replace(/%/g, "%%")}`,
    `ExecStart=${exec(["start", name, "--foreground"])}`,
    // The daemon drains its workers on SIGTERM; the rest of the group is killed only after.
    "KillMode=mixed",
    "TimeoutStopSec=90",
    "Restart=on-failure",
    "RestartSec=10",
    "",
    "[Install]",
    `WantedBy=${target.user ? "default.target" : "multi-user.target"}`,
    "",
  ].join("\n");
}

/** Whether systemd is the running init (`sd_booted`: `/run/systemd/system` exists). */
export async function systemdRunning(): Promise<boolean> {
  try {
    return (await Deno.stat("/run/systemd/system")).isDirectory;
  } catch {
    return false;
  }
}

/** What {@linkcode enableOnBoot} and {@linkcode disableOnBoot} did. */
export interface BootUnitReport {
  /** The unit file. */
  path: string;
  /** `written`, `unchanged` (enable, same text), `rewritten` or `removed`. */
  file: "written" | "unchanged" | "rewritten" | "removed";
  /** Whether systemd runs here (and so `systemctl` was called). */
  systemd: boolean;
  /** The `systemctl` commands run, or to run where systemd runs. */
  commands: string[][];
}

/** The endpoint has no boot unit to remove. */
export class NoBootUnit extends Error {
  /** Always `"NoBootUnit"`. */
  override name = "NoBootUnit";
}

async function systemctl(args: string[]): Promise<void> {
  const out = await new Deno.Command("systemctl", { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`"systemctl ${args.join(" ")}" failed (exit ${out.code}): ${err}`);
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Writes the unit (unchanged when it is already the same), then, where systemd runs,
 * `systemctl [--user] daemon-reload` and `enable`.
 */
export async function enableOnBoot(
  options: BootUnitOptions,
  systemd: boolean,
): Promise<BootUnitReport> {
  const path = join(options.target.unitDir, unitName(options.name));
  const text = bootUnitText({ ...options, configDir: resolve(options.configDir) });
  const before = await readText(path);
  if (before !== text) {
    await Deno.mkdir(options.target.unitDir, { recursive: true });
    const tmp = `${path}.${Deno.pid}.tmp`;
    await Deno.writeTextFile(tmp, text, { mode: 0o644 });
    await Deno.rename(tmp, path);
  }
  const scope = options.target.user ? ["--user"] : [];
  const commands = [[...scope, "daemon-reload"], [...scope, "enable", unitName(options.name)]];
  if (systemd) { for (const c of commands) await systemctl(c); }
  return {
    path,
    file: before === undefined ? "written" : before === text ? "unchanged" : "rewritten",
    systemd,
    commands,
  };
}

/**
 * Where systemd runs, `systemctl [--user] disable`; then removes the unit and reloads. Throws
 * {@linkcode NoBootUnit} when there is no unit file.
 */
export async function disableOnBoot(
  name: string,
  target: Pick<BootUnitTarget, "user" | "unitDir">,
  systemd: boolean,
): Promise<BootUnitReport> {
  const path = join(target.unitDir, unitName(name));
  if (await readText(path) === undefined) {
    throw new NoBootUnit(
      `Endpoint "${name}" has no ${target.user ? "user" : "system"} boot unit: "${path}" does ` +
        `not exist, so there is nothing to disable` +
        (target.user ? " (a system unit? run without --user)" : " (a user unit? add --user)"),
    );
  }
  const scope = target.user ? ["--user"] : [];
  const unit = unitName(name);
  if (systemd) await systemctl([...scope, "disable", unit]);
  await Deno.remove(path);
  if (systemd) await systemctl([...scope, "daemon-reload"]);
  return {
    path,
    file: "removed",
    systemd,
    commands: [[...scope, "disable", unit], [...scope, "daemon-reload"]],
  };
}
