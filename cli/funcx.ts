/**
 * `funcx`: run functions and command lines on funcX endpoints from a shell, a script or a cron
 * job. `run` waits and prints the result; `submit` prints the task ids and exits at once, and
 * `status`, `results` and `cancel` act on the task group later. Credentials come from
 * `FUNCX_SDK_CLIENT_ID` and `FUNCX_SDK_CLIENT_SECRET` (the service from `FUNCX_SERVICE_ADDRESS`),
 * or from `funcx login`. `--json` prints one JSON document on stdout; exit codes follow
 * sysexits.h (see `_funcx_output.ts`). This file only parses arguments.
 *
 * @module
 */
import { Command, CommanderError, Option } from "commander";
import { join } from "node:path";
import { VERSION } from "./_version.ts";
import { classify, EXIT, FuncxCliError } from "./_funcx_output.ts";
import type { GlobalOptions, TaskRequest } from "./_funcx_commands.ts";

const commands = () => import("./_funcx_commands.ts");
const wantsJson = Deno.args.includes("--json");

function globals(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as Record<string, unknown>;
  return {
    configDir: typeof o["configDir"] === "string"
      ? o["configDir"]
      : Deno.env.get("FUNCX_CONFIG_DIR") ?? join(Deno.env.get("HOME") ?? ".", ".funcx"),
    json: Boolean(o["json"]),
  };
}

function common(cmd: Command): Command {
  return cmd
    .option("--json", "print one JSON document on stdout (schemas in the README)")
    .option(
      "-c, --config-dir <dir>",
      "where the login and the function cache are kept (default: $FUNCX_CONFIG_DIR or ~/.funcx)",
    )
    .exitOverride()
    // Errors are printed once, by fail() below (and as JSON with --json).
    .configureOutput({ outputError: () => {} })
    .showHelpAfterError();
}

function seconds(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
      throw new FuncxCliError(EXIT.USAGE, "usage", `Invalid ${name} "${v}": expected seconds >= 0`);
    }
    return n;
  };
}

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 1000) {
      throw new FuncxCliError(EXIT.USAGE, "usage", `Invalid ${name} "${v}": expected 1 to 1000`);
    }
    return n;
  };
}

let exitCode: number = EXIT.OK;

function taskCommand(name: string, description: string): Command {
  return common(program.command(`${name} [function] [args...]`))
    .description(description)
    .requiredOption("-e, --endpoint <id>", "the endpoint to run on (env FUNCX_ENDPOINT_ID)")
    .option("--shell <cmd>", "run this command line instead of a function ({0}, {1}: arguments)")
    .option("--map", "one task per argument, instead of one task with all the arguments")
    .addHelpText(
      "after",
      `\nFUNCTION is FILE.ts#name: the function FILE exports as name, sent as its source text.` +
        `\nARGS are JSON: 42, '"text"', '{"a": [1, 2]}'.`,
    );
}

function taskRequest(fn: string | undefined, args: string[], o: Record<string, unknown>) {
  const req: TaskRequest = {
    endpoint: String(o["endpoint"]),
    args,
    map: Boolean(o["map"]),
  };
  if (typeof o["shell"] === "string") {
    req.shell = o["shell"];
    // With --shell, every positional is an argument.
    if (fn !== undefined) req.args = [fn, ...args];
  } else if (fn !== undefined) req.function = fn;
  if (typeof o["group"] === "string") req.group = o["group"];
  return req;
}

const program = common(new Command("funcx"))
  .description("Run functions and command lines on funcX endpoints, from a shell or cron")
  .version(VERSION, "-V, --version", "print the version");

common(program.command("login"))
  .description("Log in with the device flow (or check the client credentials in the env)")
  .option("--force", "log in again even with a stored login")
  .action(async (o: Record<string, unknown>, cmd: Command) => {
    exitCode = await (await commands()).loginCommand(globals(cmd), Boolean(o["force"]));
  });

common(program.command("logout"))
  .description("Revoke and forget the stored login")
  .action(async (_o: unknown, cmd: Command) => {
    exitCode = await (await commands()).logoutCommand(globals(cmd));
  });

taskCommand("run", "Run a function or a command line on an endpoint; wait and print the result")
  .option("--group <group>", "task group: a UUID or a name (default: a new group)")
  .option("--timeout <seconds>", "stop waiting after this long (exit 75)", seconds("--timeout"))
  .action(async (fn: string | undefined, args: string[], o: Record<string, unknown>, cmd) => {
    exitCode = await (await commands()).runCommand(
      globals(cmd),
      taskRequest(fn, args, o),
      o["timeout"] as number | undefined,
    );
  });

taskCommand("submit", "Submit tasks, print their ids and exit at once (for cron)")
  .requiredOption(
    "--group <group>",
    "task group: a UUID, or a name (the same name, the same group)",
  )
  .action(async (fn: string | undefined, args: string[], o: Record<string, unknown>, cmd) => {
    exitCode = await (await commands()).submitCommand(globals(cmd), taskRequest(fn, args, o));
  });

common(program.command("status <group>"))
  .description("Each task's state in a task group, and the counts")
  .action(async (group: string, _o: unknown, cmd: Command) => {
    exitCode = await (await commands()).statusCommand(globals(cmd), group);
  });

common(program.command("results <group>"))
  .description("The results of a task group's finished tasks")
  .option("--wait", "wait until every task has finished (a progress bar on a terminal)")
  .option("--since <time>", "only tasks finished since then (ISO 8601, or seconds since 1970)")
  .option("--timeout <seconds>", "with --wait, stop waiting after this long", seconds("--timeout"))
  .action(async (group: string, o: Record<string, unknown>, cmd: Command) => {
    exitCode = await (await commands()).resultsCommand(globals(cmd), group, {
      wait: Boolean(o["wait"]),
      ...(typeof o["since"] === "string" ? { since: o["since"] } : {}),
      ...(typeof o["timeout"] === "number" ? { timeoutS: o["timeout"] } : {}),
    });
  });

common(program.command("cancel <task-ids...>"))
  .description("Cancel tasks (queued ones never run; running ones are stopped)")
  .action(async (ids: string[], _o: unknown, cmd: Command) => {
    exitCode = await (await commands()).cancelCommand(globals(cmd), ids);
  });

common(program.command("endpoints"))
  .description("Your endpoints and whether they are online")
  .action(async (_o: unknown, cmd: Command) => {
    exitCode = await (await commands()).endpointsCommand(globals(cmd));
  });

common(program.command("functions"))
  .description("Your registered functions, newest first")
  .addOption(
    new Option("--limit <n>", "how many (1 to 1000)").default(100).argParser(
      positiveInt("--limit"),
    ),
  )
  .action(async (o: Record<string, unknown>, cmd: Command) => {
    exitCode = await (await commands()).functionsCommand(globals(cmd), o["limit"] as number);
  });

// The endpoint option falls back to FUNCX_ENDPOINT_ID, as the SDK's executor does.
const envEndpoint = Deno.env.get("FUNCX_ENDPOINT_ID");
const args = [...Deno.args];
if (
  envEndpoint && ["run", "submit"].includes(args[0] ?? "") &&
  !args.some((a) => a === "-e" || a === "--endpoint" || a.startsWith("--endpoint="))
) {
  args.splice(1, 0, "--endpoint", envEndpoint);
}

function fail(err: unknown): never {
  const { exitCode, code, message } = classify(err);
  if (wantsJson) console.log(JSON.stringify({ error: { code, message, exit_code: exitCode } }));
  console.error(`funcx: ${message}`);
  Deno.exit(exitCode);
}

try {
  await program.parseAsync(["deno", "funcx", ...args]);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and --version end the program with code 0; every other commander error is bad usage.
    if (err.exitCode === 0) Deno.exit(0);
    fail(new FuncxCliError(EXIT.USAGE, "usage", err.message.replace(/^error: /, "")));
  }
  fail(err);
}
Deno.exit(exitCode);
