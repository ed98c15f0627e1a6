/**
 * `funcx-service`: run the web service (`serve`) and administer it (`user add`, `user list`,
 * `client create`, `version`). Settings come from flags, then `FUNCX_SERVICE_*` environment
 * variables. Output for scripts: `--json` on every command prints one JSON document on stdout
 * (`user add` and `client create` always do).
 *
 * @module
 */
import { Command, Option } from "commander";
import { configureLogging } from "./_logging.ts";
import { FuncxService, redactUrl } from "../service/server.ts";
import { QUEUE_TYPE_SETTINGS } from "../service/queue_type_choice.ts";
import { openStore } from "../service/open_store.ts";
import type { Store } from "../service/store.ts";
import { createClient, hashPassword } from "../service/auth.ts";
import { signInSettingsFrom } from "../service/sign_in_guard.ts";
import { API_VERSION } from "../service/app.ts";
import { VERSION } from "./_version.ts";

const env = (name: string, fallback: string): string => Deno.env.get(name) ?? fallback;

const DEFAULT_DATABASE = "funcx-service.db";

function dbOption(cmd: Command): Command {
  return cmd
    .option(
      "--database <url-or-path>",
      "the store: a postgres:// or postgresql:// URL (PostgreSQL, for several replicas) or a " +
        `SQLite file path (env FUNCX_DATABASE_URL; default ${DEFAULT_DATABASE})`,
    )
    .addOption(new Option("--db <path>", "same as --database").hideHelp());
}

/** Where the store is: `--database`, `--db`, then `FUNCX_DATABASE_URL`, `FUNCX_SERVICE_DB`. */
function databaseOf(o: { database?: string; db?: string }): string {
  return o.database ?? o.db ?? Deno.env.get("FUNCX_DATABASE_URL") ??
    env("FUNCX_SERVICE_DB", DEFAULT_DATABASE);
}

/** Runs `fn` on the store named by the options, closing it afterwards. */
async function withStore<T>(
  o: { database?: string; db?: string },
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const store = await openStore(databaseOf(o));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const program = new Command("funcx-service")
  .description("The funcX web service: REST API, auth, task store, broker topology")
  .showHelpAfterError();

dbOption(program.command("serve").description("Run the service in the foreground"))
  .option("--host <host>", "address to listen on", env("FUNCX_SERVICE_HOST", "127.0.0.1"))
  .option("--port <port>", "port to listen on (0: any free)", env("FUNCX_SERVICE_PORT", "8000"))
  .option(
    "--amqp-url <urls>",
    "broker URL; for a cluster, every node's URL, comma-separated (env FUNCX_SERVICE_AMQP_URL)",
    env("FUNCX_SERVICE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672"),
  )
  .option(
    "--public-amqp-url <urls>",
    "broker URL(s) given to endpoints and result streams, comma-separated (default: --amqp-url)",
    Deno.env.get("FUNCX_SERVICE_PUBLIC_AMQP_URL"),
  )
  .option(
    "--queue-type <type>",
    "type of the task and results queues: quorum (a cluster; replicated), classic (a broker " +
      "of one node; less work per message) or auto: the type they already have, else classic " +
      "when the management API shows one node, quorum otherwise (env FUNCX_SERVICE_QUEUE_TYPE)",
    env("FUNCX_SERVICE_QUEUE_TYPE", "auto"),
  )
  .option(
    "--direct-results",
    "endpoints publish results straight to the task group's result streams as well as to the " +
      "service: one broker hop instead of two (the default)",
  )
  .option(
    "--no-direct-results",
    "results go from endpoints to the service and from there to the result streams: two " +
      "broker hops (env FUNCX_SERVICE_DIRECT_RESULTS=0)",
  )
  .option(
    "--sync-commits",
    "SQLite store: sync every commit to disk before answering, so that a machine that loses " +
      "power loses no accepted task; each submit then waits for a disk flush (without it, " +
      "commits are synced within a second; PostgreSQL syncs each commit by default) " +
      "(env FUNCX_SERVICE_SYNC_COMMITS=1)",
  )
  .option(
    "--broker-deadline <seconds>",
    "how long the broker may take to confirm a message or declare a queue before the service " +
      "ends the connection as dead and reconnects (env FUNCX_SERVICE_BROKER_DEADLINE)",
    env("FUNCX_SERVICE_BROKER_DEADLINE", "30"),
  )
  .option("--token-ttl <seconds>", "access token lifetime", env("FUNCX_SERVICE_TOKEN_TTL", "3600"))
  .option(
    "--max-request-bytes <n>",
    "largest request body",
    env("FUNCX_SERVICE_MAX_REQUEST_BYTES", String(5 * 1024 * 1024)),
  )
  .option(
    "--management-url <urls>",
    "RabbitMQ management API(s) with admin login, comma-separated, for per-endpoint and " +
      "per-user broker logins",
    Deno.env.get("FUNCX_SERVICE_MANAGEMENT_URL"),
  )
  .option(
    "--task-ttl <seconds>",
    "how long tasks and results are kept",
    env("FUNCX_SERVICE_TASK_TTL", "1209600"),
  )
  .option(
    "--refresh-ttl <seconds>",
    "refresh token lifetime",
    env("FUNCX_SERVICE_REFRESH_TTL", String(180 * 86400)),
  )
  .option(
    "--device-interval <seconds>",
    "seconds between device-login polls",
    env("FUNCX_SERVICE_DEVICE_INTERVAL", "5"),
  )
  .option(
    "--public-address <url>",
    "address users reach the service at (login links)",
    Deno.env.get("FUNCX_SERVICE_PUBLIC_ADDRESS"),
  )
  .option(
    "--rate-limit <n>",
    "requests per client per window (0: off)",
    env("FUNCX_SERVICE_RATE_LIMIT", "20"),
  )
  .option("--rate-window <seconds>", "rate limit window", env("FUNCX_SERVICE_RATE_WINDOW", "10"))
  .option(
    "--max-result-bytes <n>",
    "largest stored result",
    env("FUNCX_SERVICE_MAX_RESULT_BYTES", String(10 * 1024 * 1024)),
  )
  .option("--sign-in-max-failures <n>", "failed sign-ins to an account before it is locked (5)")
  .option(
    "--sign-in-max-failures-per-address <n>",
    "failed sign-ins from one client address before it is locked (20)",
  )
  .option("--sign-in-window <seconds>", "how long a failed sign-in counts (900)")
  .option("--sign-in-lock <seconds>", "how long a lock lasts (300)")
  .option("--sign-in-delay-ms <ms>", "delay after the first failure, doubling each time (250)")
  .option("--sign-in-max-delay-ms <ms>", "longest such delay (4000)")
  .option("--session-ttl <seconds>", "how long a dashboard session lasts (28800)")
  .option("--trust-proxy", "client address and scheme from X-Forwarded-For/-Proto (behind a proxy)")
  .option(
    "--metrics-token <token>",
    "bearer token GET /metrics asks for (env FUNCX_SERVICE_METRICS_TOKEN; default: open)",
    Deno.env.get("FUNCX_SERVICE_METRICS_TOKEN"),
  )
  .option("--debug", "verbose logging")
  .action(async (o) => {
    await configureLogging({ debug: Boolean(o.debug) });
    // Flags over FUNCX_SERVICE_SIGN_IN_* (and the rest) over the defaults.
    const signIn = signInSettingsFrom({
      accountMaxFailures: o.signInMaxFailures,
      addressMaxFailures: o.signInMaxFailuresPerAddress,
      windowS: o.signInWindow,
      lockS: o.signInLock,
      delayMs: o.signInDelayMs,
      maxDelayMs: o.signInMaxDelayMs,
      sessionTtlS: o.sessionTtl,
      trustProxy: o.trustProxy,
    }, Deno.env.toObject());
    const numbers: Record<string, number> = {};
    for (
      const key of [
        "tokenTtl",
        "refreshTtl",
        "deviceInterval",
        "rateLimit",
        "rateWindow",
        "maxResultBytes",
        "maxRequestBytes",
        "taskTtl",
      ]
    ) {
      const n = Number(o[key]);
      if (!Number.isFinite(n) || n < 0) {
        throw new Error(
          `Invalid --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} "${
            o[key]
          }": expected a number >= 0`,
        );
      }
      numbers[key] = n;
    }
    const port = Number(o.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new Error(`Invalid --port "${o.port}": expected 0-65535`);
    }
    const queueType = QUEUE_TYPE_SETTINGS.find((t) => t === o.queueType);
    if (queueType === undefined) {
      throw new Error(
        `Invalid --queue-type "${o.queueType}": expected auto, quorum or classic`,
      );
    }
    const brokerDeadline = Number(o.brokerDeadline);
    if (!Number.isFinite(brokerDeadline) || brokerDeadline <= 0) {
      throw new Error(
        `Invalid --broker-deadline "${o.brokerDeadline}": expected a number of seconds > 0`,
      );
    }
    const database = databaseOf(o);
    const service = await FuncxService.start({
      database,
      amqpUrl: o.amqpUrl,
      queueType,
      brokerDeadlineS: brokerDeadline,
      syncCommits: o.syncCommits ?? Deno.env.get("FUNCX_SERVICE_SYNC_COMMITS") === "1",
      directResults: o.directResults ?? Deno.env.get("FUNCX_SERVICE_DIRECT_RESULTS") !== "0",
      publicAmqpUrl: o.publicAmqpUrl ?? o.amqpUrl,
      hostname: o.host,
      port,
      tokenTtlS: numbers["tokenTtl"]!,
      refreshTtlS: numbers["refreshTtl"]!,
      deviceIntervalS: numbers["deviceInterval"]!,
      publicAddress: o.publicAddress,
      rateLimitRequests: numbers["rateLimit"]!,
      rateLimitWindowS: numbers["rateWindow"]!,
      maxResultBytes: numbers["maxResultBytes"]!,
      maxRequestBytes: numbers["maxRequestBytes"]!,
      taskTtlS: numbers["taskTtl"]!,
      managementUrl: o.managementUrl,
      signIn,
      metricsToken: o.metricsToken || undefined,
    });
    // One machine-readable line so supervisors and tests know where the service is.
    console.log(JSON.stringify({ event: "listening", address: service.address }));
    console.error(
      `funcx-service listening on ${service.address} (broker ${redactUrl(o.amqpUrl)}, ` +
        `database ${redactUrl(database)})`,
    );
    const stop = async (why: string, code = 0) => {
      console.error(`funcx-service stopping: ${why}`);
      await service.stop();
      Deno.exit(code);
    };
    Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
    Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
    // A lost broker connection is re-established by the service itself (see its log); it keeps
    // answering meanwhile, with 503 broker_unavailable where a request needs the broker.
  });

program.command("version")
  .description("Print the version")
  .option("--json", 'print {"version", "api_version"}')
  .action((o) => {
    console.log(
      o.json
        ? JSON.stringify({ version: VERSION, api_version: API_VERSION })
        : `funcX service version: ${VERSION} (REST API ${API_VERSION})`,
    );
  });

const user = program.command("user").description("Manage users");
dbOption(user.command("add <name>").description("Add a user (or set its password)"))
  .option("--password-stdin", "read the password from the first line of stdin")
  .option("--no-password", "a user that can not sign in on the login page (API clients only)")
  .option("--json", "print the user as JSON (the default)")
  .action(async (name, o) => {
    let password: string | undefined;
    if (o.passwordStdin) {
      const text = await new Response(Deno.stdin.readable).text();
      password = text.split("\n")[0];
    } else if (o.password !== false && Deno.stdin.isTerminal()) {
      password = prompt(`Password for "${name}":`) ?? undefined;
    }
    if (password !== undefined && password.length < 8) {
      throw new Error("Password too short: use at least 8 characters");
    }
    await withStore(o, async (store) => {
      const u = await store.ensureUser(name);
      if (password !== undefined) await store.setPassword(u.id, await hashPassword(password));
      console.log(JSON.stringify({ ...u, can_sign_in: password !== undefined }));
    });
  });
dbOption(user.command("list").description("List users"))
  .option("--json", 'print {"users": [{"id", "name"}]}')
  .action(async (o) => {
    await withStore(o, async (store) => {
      const users = await store.listUsers();
      if (o.json) {
        console.log(JSON.stringify({ users: users.map(({ id, name }) => ({ id, name })) }));
      } else for (const u of users) console.log(`${u.id}  ${u.name}`);
    });
  });

dbOption(
  program.command("client").command("create").description(
    "Create an API client for scripts (prints its id and secret once)",
  ),
)
  .requiredOption("--user <name>", "user the client acts for (created if missing)")
  .option("--name <name>", "label of the client", "default")
  .option("--json", 'print {"client_id", "client_secret"} (the default)')
  .action(async (o) => {
    const creds = await withStore(o, (store) => createClient(store, o.user, o.name));
    console.log(JSON.stringify(creds));
  });

try {
  await program.parseAsync(["deno", "funcx-service", ...Deno.args]);
} catch (err) {
  console.error(`funcx-service: ${(err as Error).message}`);
  Deno.exit(1);
}
