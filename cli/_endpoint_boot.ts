/**
 * `funcx-endpoint enable-on-boot NAME [--user]` and `disable-on-boot NAME [--user]`: write or
 * remove the endpoint's systemd unit (`endpoint/boot_unit.ts`) and say what was done, and what is
 * left to do where systemd does not run here.
 *
 * @module
 */
import { resolve } from "node:path";
import {
  type BootUnitTarget,
  disableOnBoot,
  enableOnBoot,
  NoBootUnit,
  systemdRunning,
  unitDirectory,
  unitName,
} from "../endpoint/boot_unit.ts";
import { endpointDir } from "../endpoint/endpoint_dir.ts";
import { selfCommand } from "../endpoint/engine/command.ts";
import { accountNameOf } from "../endpoint/identity_map.ts";
import { CliExit, type CommonOptions, EXIT } from "./_endpoint_exit.ts";
import { loadEndpointConfig } from "./_endpoint_start.ts";

async function target(user: boolean): Promise<BootUnitTarget> {
  const env = Deno.env.toObject();
  if (!user && Deno.uid() !== 0) {
    throw new CliExit(
      EXIT.ERROR,
      `A system unit goes in /etc/systemd/system, which needs root: run this with sudo, or ` +
        "add --user for a unit of your own systemd user manager",
    );
  }
  // Under sudo the unit runs as the user who asked, not as root.
  const account = env["SUDO_USER"] || await accountNameOf(Deno.uid() ?? 0);
  return { user, account, unitDir: unitDirectory(user, env) };
}

function commandLine(args: readonly string[]): string {
  return `systemctl ${args.join(" ")}`;
}

/** `enable-on-boot NAME [--user]`; returns the exit code. */
export async function enableOnBootCommand(
  name: string,
  user: boolean,
  common: CommonOptions,
): Promise<number> {
  // Refuses an endpoint that is not configured, or whose config is invalid, before any unit.
  await loadEndpointConfig(name, endpointDir(common.configDir, name), {});
  const systemd = await systemdRunning();
  const report = await enableOnBoot({
    name,
    configDir: resolve(common.configDir),
    command: selfCommand().argv,
    target: await target(user),
  }, systemd);
  console.log(
    report.file === "unchanged"
      ? `The unit "${report.path}" is already written and up to date`
      : `${report.file === "written" ? "Wrote" : "Rewrote"} the unit "${report.path}"`,
  );
  if (systemd) {
    console.log(
      `Enabled ${unitName(name)} (${report.commands.map(commandLine).join("; ")}): ` +
        `endpoint "${name}" starts at boot`,
    );
  } else {
    console.log(
      "systemd is not running on this machine (no /run/systemd/system), so the unit was not " +
        `enabled; where systemd runs, enable it with: ` +
        report.commands.map(commandLine).join(" && "),
    );
  }
  if (user) {
    console.log(
      "A user unit starts at boot only if your user manager does: run " +
        "`loginctl enable-linger` once (else it starts when you log in)",
    );
  }
  return EXIT.OK;
}

/** `disable-on-boot NAME [--user]`; returns the exit code. */
export async function disableOnBootCommand(
  name: string,
  user: boolean,
  common: CommonOptions,
): Promise<number> {
  endpointDir(common.configDir, name); // checks the name
  const systemd = await systemdRunning();
  let report;
  try {
    report = await disableOnBoot(name, await target(user), systemd);
  } catch (err) {
    if (err instanceof NoBootUnit) throw new CliExit(EXIT.ERROR, err.message);
    throw err;
  }
  console.log(`Removed the unit "${report.path}"`);
  console.log(
    systemd
      ? `Disabled ${unitName(name)}: endpoint "${name}" no longer starts at boot`
      : "systemd is not running on this machine, so it had nothing enabled: nothing else to undo",
  );
  return EXIT.OK;
}
