/**
 * `funcx-endpoint`: configure, start (as a background daemon, or in the foreground), stop, list
 * and delete endpoints. Credentials come from `FUNCX_SDK_CLIENT_ID` and
 * `FUNCX_SDK_CLIENT_SECRET`; endpoints live in `-c/--config-dir` (default `$FUNCX_CONFIG_DIR`,
 * else `~/.funcx`). This file only parses arguments; the commands live in `_endpoint_*.ts`.
 *
 * @module
 */
import { Command } from "commander";
import { join } from "node:path";
import { ENDPOINT_VERSION } from "../endpoint/version.ts";
import { CliExit, type CommonOptions, EXIT } from "./_endpoint_exit.ts";
import type { StartFlags } from "./_endpoint_start.ts";

// Each command loads its modules when it runs, so the engine's `__worker` and `__manager` (in a
// compiled binary) and the daemon do not carry the code of the commands they never use.
const startModule = () => import("./_endpoint_start.ts");
const commandsModule = () => import("./_endpoint_commands.ts");
const completionModule = () => import("./_endpoint_completion.ts");

function withCommon(cmd: Command): Command {
  return cmd
    .option(
      "-c, --config-dir <dir>",
      "endpoints directory (default: $FUNCX_CONFIG_DIR or ~/.funcx)",
    )
    .option("--debug", "log debug messages")
    .option("--log-to-console", "also log to the console")
    .option("--no-color", "no colours in console logs");
}

function common(cmd: Command): CommonOptions {
  const o = cmd.optsWithGlobals() as Record<string, unknown>;
  return {
    configDir: typeof o["configDir"] === "string"
      ? o["configDir"]
      : Deno.env.get("FUNCX_CONFIG_DIR") ?? join(Deno.env.get("HOME") ?? ".", ".funcx"),
    debug: Boolean(o["debug"]),
    logToConsole: Boolean(o["logToConsole"]),
    color: o["color"] !== false,
  };
}

let exitCode: number = EXIT.OK;
type Action = (name: string, opts: Record<string, unknown>, cmd: Command) => Promise<number>;
const run = (fn: Action) => async (...a: unknown[]) => {
  const cmd = a[a.length - 1] as Command;
  const opts = a[a.length - 2] as Record<string, unknown>;
  const name = typeof a[0] === "string" ? a[0] : "default";
  exitCode = await fn(name, opts, cmd);
};

function startFlags(o: Record<string, unknown>): StartFlags {
  const f: StartFlags = {};
  const uuid = o["endpointUuid"] ?? o["endpointId"];
  if (typeof uuid === "string") f.endpointUuid = uuid;
  if (o["foreground"]) f.foreground = true;
  if (typeof o["workers"] === "string") f.workers = o["workers"];
  if (typeof o["heartbeat"] === "string") f.heartbeat = o["heartbeat"];
  if (o["dieWithParent"]) f.dieWithParent = true;
  if (typeof o["parent"] === "string") f.parent = o["parent"];
  return f;
}

function withStartFlags(cmd: Command): Command {
  return cmd
    .option("--endpoint-uuid <uuid>", "id to register with when endpoint.json does not exist yet")
    .option("--foreground", "run in the foreground (as detach_endpoint: false)")
    .option("--workers <n>", "worker subprocesses (overrides engine.max_workers_per_node)")
    .option("--heartbeat <seconds>", "seconds between status reports (overrides heartbeat_period)")
    .option(
      "--die-with-parent",
      "stop the endpoint when the process that ran this command exits (job scripts, supervisors)",
    );
}

const program = withCommon(new Command("funcx-endpoint"))
  .description("Run funcX endpoints: take tasks from the service and run them here")
  .option("--install-completion [shell]", "add shell completion to your shell's rc file")
  .showHelpAfterError()
  .action(async (o: Record<string, unknown>, cmd: Command) => {
    if (o["installCompletion"] === undefined) return cmd.help();
    const { detectShell, installCompletion, SHELLS } = await completionModule();
    const shell = typeof o["installCompletion"] === "string"
      ? o["installCompletion"]
      : detectShell();
    if (!shell || !(SHELLS as readonly string[]).includes(shell)) {
      throw new CliExit(
        EXIT.ERROR,
        `Cannot install completion for shell "${shell ?? "?"}": use bash, zsh or fish`,
      );
    }
    const file = await installCompletion(shell as typeof SHELLS[number], program.name());
    console.log(`Completion for ${shell} installed in "${file}"; open a new shell to use it`);
  });

withCommon(program.command("version"))
  .description("Print the version")
  .option("--json", 'print {"version": "..."}')
  .action((o: Record<string, unknown>) => {
    console.log(
      o["json"]
        ? JSON.stringify({ version: ENDPOINT_VERSION })
        : `funcX endpoint version: ${ENDPOINT_VERSION}`,
    );
  });

withCommon(program.command("configure [name]"))
  .description("Create <config-dir>/NAME/config.yaml from a commented template")
  .option(
    "--endpoint-config <file>",
    "start from this config.yaml template instead ($name is replaced by the endpoint's name)",
  )
  .option(
    "--multi-user",
    "an endpoint for a whole site, run by an administrator: each user's tasks run under their " +
      "own local account",
  )
  .action(
    run((name, o, cmd) =>
      commandsModule().then((m) =>
        m.configureCommand(
          name,
          common(cmd),
          o.endpointConfig as string | undefined,
          Boolean(o["multiUser"]),
        )
      )
    ),
  );

withStartFlags(withCommon(program.command("start [name]")))
  .option("--endpoint-id <uuid>", "same as --endpoint-uuid")
  .description("Register the endpoint and run it (in the background unless --foreground)")
  .action(
    run(async (name, o, cmd) =>
      (await startModule()).startCommand(name, startFlags(o), common(cmd))
    ),
  );

withStartFlags(withCommon(program.command("__daemon <name>", { hidden: true })))
  .option("--parent <pid:ticks>", "the process to die with")
  .action(
    run(async (name, o, cmd) =>
      (await startModule()).daemonCommandMain(name, startFlags(o), common(cmd))
    ),
  );

// The engine's processes, for a `deno compile`d binary (under `deno run` they are separate files).
program.command("__manager", { hidden: true }).action(async () => {
  const { managerMain } = await import("../endpoint/engine/manager_main.ts");
  Deno.exit(await managerMain());
});
// A multi-user endpoint's user endpoint (already switched to its local account).
program.command("__user_endpoint", { hidden: true }).action(async () => {
  const { configureLogging } = await import("./_logging.ts");
  await configureLogging(); // to stderr: its stdout carries frames
  const { userEndpointMain } = await import("../endpoint/user_endpoint_main.ts");
  Deno.exit(await userEndpointMain());
});
program.command("__worker", { hidden: true }).action(async () => {
  const { workerMain } = await import("../endpoint/engine/worker_main.ts");
  await workerMain();
  Deno.exit(0);
});

withCommon(program.command("stop [name]"))
  .description("Stop the endpoint and all its processes")
  .option("--remote", "also lock it on the service, so every process using its id stops")
  .action(
    run(async (name, o, cmd) =>
      (await commandsModule()).stopCommand(name, { remote: Boolean(o["remote"]) }, common(cmd))
    ),
  );

withStartFlags(withCommon(program.command("restart [name]")))
  .description("Stop, then start the endpoint")
  .action(run(async (name, o, cmd) => {
    await (await commandsModule()).stopCommand(name, {}, common(cmd));
    return await (await startModule()).startCommand(name, startFlags(o), common(cmd));
  }));

withCommon(program.command("list"))
  .description("List endpoints with their local status")
  .option("--json", 'print {"endpoints": [{"name", "endpoint_id", "status"}]}')
  .action(
    run(async (_n, o, cmd) =>
      (await commandsModule()).listCommand(common(cmd), Boolean(o["json"]))
    ),
  );

withCommon(program.command("delete [name]"))
  .description("Delete the endpoint on the service and here")
  .option("--yes", "do not ask for confirmation")
  .option("--force", "delete it here even if the service cannot")
  .action(
    run((name, o, cmd) =>
      commandsModule().then((m) =>
        m.deleteCommand(name, { yes: Boolean(o["yes"]), force: Boolean(o["force"]) }, common(cmd))
      )
    ),
  );

withCommon(program.command("logout"))
  .description("Remove stored tokens")
  .option("--force", "even while endpoints are running")
  .action(
    run(async (_n, o, cmd) =>
      (await commandsModule()).logoutCommand({ force: Boolean(o["force"]) }, common(cmd))
    ),
  );

withCommon(program.command("whoami"))
  .description("Show which service and identity this uses")
  .option("--json", 'print {"user", "user_id", "client_id", "service"}')
  .action(
    run(async (_n, o, cmd) =>
      (await commandsModule()).whoamiCommand(common(cmd), Boolean(o["json"]))
    ),
  );

withCommon(program.command("self-diagnostic [name]"))
  .description("Check what the endpoint needs (service, login, broker, TLS, clock, disk, commands)")
  .option("--json", 'print {"endpoint", "ok", "checks": [{"check", "status", "detail", "fix"}]}')
  .option("--max-clock-skew <seconds>", "largest clock difference with the service (30)")
  .option("--min-free-disk <MiB>", "least free space for the result journal (100)")
  .action(
    run(async (name, o, cmd) =>
      (await import("./_endpoint_diagnostic.ts")).selfDiagnosticCommand(name, {
        json: Boolean(o["json"]),
        ...(typeof o["maxClockSkew"] === "string" ? { maxClockSkew: o["maxClockSkew"] } : {}),
        ...(typeof o["minFreeDisk"] === "string" ? { minFreeDisk: o["minFreeDisk"] } : {}),
      }, common(cmd))
    ),
  );

withCommon(program.command("enable-on-boot [name]"))
  .description("Start the endpoint at boot: write and enable a systemd unit")
  .option("--user", "a unit of your systemd user manager (default: a system unit, as root)")
  .action(
    run(async (name, o, cmd) =>
      (await import("./_endpoint_boot.ts")).enableOnBootCommand(
        name,
        Boolean(o["user"]),
        common(cmd),
      )
    ),
  );

withCommon(program.command("disable-on-boot [name]"))
  .description("Stop starting the endpoint at boot: disable and remove its systemd unit")
  .option("--user", "the unit of your systemd user manager (default: the system unit)")
  .action(
    run(async (name, o, cmd) =>
      (await import("./_endpoint_boot.ts")).disableOnBootCommand(
        name,
        Boolean(o["user"]),
        common(cmd),
      )
    ),
  );

withCommon(program.command("completion <shell>"))
  .description("Print the completion script for bash, zsh or fish")
  .action(async (shell: string) => {
    const { completionScript, SHELLS } = await completionModule();
    if (!(SHELLS as readonly string[]).includes(shell)) {
      throw new CliExit(EXIT.ERROR, `Unknown shell "${shell}": use bash, zsh or fish`);
    }
    console.log(completionScript(program, shell as typeof SHELLS[number]));
  });

try {
  await program.parseAsync(["deno", "funcx-endpoint", ...Deno.args]);
} catch (err) {
  if (err instanceof CliExit) {
    console.error(err.message);
    Deno.exit(err.code);
  }
  console.error(`funcx-endpoint: ${(err as Error).message}`);
  Deno.exit(EXIT.ERROR);
}
Deno.exit(exitCode);
