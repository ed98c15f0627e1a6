/**
 * A whole funcX stack of real processes: a private RabbitMQ node (shared by a test run and given
 * to each stack as its own vhost), a `funcx-service` process with its own SQLite file and API
 * client, and `funcx-endpoint` processes. Used by the end-to-end tests, the demo and `dev`.
 *
 * @module
 */
import { join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { FuncXClient } from "../../mod.ts";
import { type ChildHandle, runDeno, spawnDeno } from "./process.ts";
import { RabbitBroker } from "./rabbitmq.ts";
import { BrokerManagement } from "../../service/broker_management.ts";

/** How to reach a broker and its management API. */
export interface BrokerAccess {
  amqpUrl: string;
  managementUrl: string;
  user: string;
  password: string;
}

let shared: Promise<{ access: BrokerAccess; broker?: RabbitBroker }> | undefined;

/**
 * The test run's broker: from `FUNCX_TEST_AMQP_URL` and `FUNCX_TEST_MANAGEMENT_URL` when the
 * test runner started one, else a private node started now and stopped when this process exits.
 */
export function sharedBroker(): Promise<BrokerAccess> {
  shared ??= (async () => {
    const amqpUrl = Deno.env.get("FUNCX_TEST_AMQP_URL");
    const managementUrl = Deno.env.get("FUNCX_TEST_MANAGEMENT_URL");
    if (amqpUrl && managementUrl) {
      const u = new URL(amqpUrl);
      return {
        access: {
          amqpUrl,
          managementUrl,
          user: decodeURIComponent(u.username),
          password: decodeURIComponent(u.password),
        },
      };
    }
    const broker = await RabbitBroker.start();
    globalThis.addEventListener("unload", () => void broker.stop());
    return { access: brokerAccess(broker), broker };
  })();
  return shared.then((s) => s.access);
}

/** Access details of a started broker. */
export function brokerAccess(broker: RabbitBroker): BrokerAccess {
  return {
    amqpUrl: broker.info.amqpUrl,
    managementUrl: broker.info.managementUrl,
    user: broker.info.adminUser,
    password: broker.info.adminPassword,
  };
}

/** The broker's management API, as the service itself asks it. */
function managementOf(access: BrokerAccess): BrokerManagement {
  return new BrokerManagement([
    { url: access.managementUrl, user: access.user, password: access.password },
  ]);
}

/** The type (`quorum`, `classic`) of `queue` in `vhost`; throws when there is no such queue. */
export async function queueTypeOf(
  access: BrokerAccess,
  vhost: string,
  queue: string,
): Promise<string> {
  const info = await managementOf(access).read<
    { type?: string; arguments?: Record<string, unknown> }
  >(`queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`);
  if (!info) throw new Error(`No queue "${queue}" in vhost "${vhost}"`);
  return String(info.arguments?.["x-queue-type"] ?? info.type);
}

/**
 * The queue type a service's log says it declared its queues as (the last word: `auto` may take
 * the type back when the broker refuses its first guess); undefined when the log has none.
 */
export function declaredQueueType(log: string): string | undefined {
  return [...log.matchAll(/Task and results queues: "(\w+)"/g)].at(-1)?.[1];
}

/** Creates a vhost with full rights for the admin user; returns its AMQP URL. */
export async function createVhost(access: BrokerAccess, name: string): Promise<string> {
  const v = encodeURIComponent(name);
  const management = managementOf(access);
  await management.call("PUT", `vhosts/${v}`, {});
  await management.call("PUT", `permissions/${v}/${encodeURIComponent(access.user)}`, {
    configure: ".*",
    write: ".*",
    read: ".*",
  });
  const u = new URL(access.amqpUrl);
  u.pathname = `/${v}`;
  return u.toString();
}

/** Deletes a vhost and everything in it. */
export async function deleteVhost(access: BrokerAccess, name: string): Promise<void> {
  await managementOf(access).call("DELETE", `vhosts/${encodeURIComponent(name)}`);
}

/** A vhost of its own on the shared broker and a temporary directory: both go on dispose. */
export interface PrivateVhost extends AsyncDisposable {
  access: BrokerAccess;
  vhost: string;
  /** The vhost's AMQP URL (admin user). */
  amqpUrl: string;
  dir: string;
}

/**
 * A fresh vhost on the shared broker and a temporary directory named with `prefix`; disposing
 * deletes both (after whatever was disposed before it, so declare it first).
 */
export async function privateVhost(prefix: string): Promise<PrivateVhost> {
  const access = await sharedBroker();
  const vhost = `funcx-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(access, vhost);
  const dir = await Deno.makeTempDir({ prefix });
  return {
    access,
    vhost,
    amqpUrl,
    dir,
    async [Symbol.asyncDispose]() {
      await deleteVhost(access, vhost).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A running service process. */
export interface ServiceHandle {
  process: ChildHandle;
  address: string;
  clientId: string;
  clientSecret: string;
  /** The store: its SQLite file, or its PostgreSQL URL. */
  dbPath: string;
  amqpUrl: string;
  /** Environment a script needs to use this service. */
  env: Record<string, string>;
}

/** Options of {@linkcode startService}. */
export interface StartServiceOptions {
  /** Directory for the database and logs. */
  dir: string;
  /** AMQP URL (with vhost) the service uses. */
  amqpUrl: string;
  /** Copy logs to stderr. @default false */
  echo?: boolean;
  /** Port. @default 0 */
  port?: number;
  /** Extra `serve` flags. */
  args?: string[];
  /** Broker whose management API the service uses for scoped logins. */
  broker?: BrokerAccess;
  /** Requests per client per 10 s; tests poll a lot, so off unless a test sets it. @default 0 */
  rateLimit?: number;
  /** Reuse this API client instead of creating one (for restarts and replicas). */
  existingClient?: { clientId: string; clientSecret: string };
  /** The store: a PostgreSQL URL or a SQLite file. @default `<dir>/service.db` */
  database?: string;
  /** Environment of the service process (`FUNCX_SERVICE_SIGN_IN_*`, ...). @default none */
  env?: Record<string, string>;
}

/** The management URL with admin login of a broker. */
export function managementUrlOf(access: BrokerAccess): string {
  const u = new URL(access.managementUrl);
  u.username = encodeURIComponent(access.user);
  u.password = encodeURIComponent(access.password);
  return u.toString().replace(/\/$/, "");
}

/** An SDK client logged in as a service's API client. */
export function clientOf(service: ServiceHandle): FuncXClient {
  return new FuncXClient({
    serviceAddress: service.address,
    clientId: service.clientId,
    clientSecret: service.clientSecret,
  });
}

/** Creates an API client and starts `funcx-service serve`. */
export async function startService(options: StartServiceOptions): Promise<ServiceHandle> {
  const dbPath = options.database ?? join(options.dir, "service.db");
  const creds = options.existingClient
    ? {
      client_id: options.existingClient.clientId,
      client_secret: options.existingClient.clientSecret,
    }
    : JSON.parse(
      await runDeno("cli/funcx_service.ts", [
        "client",
        "create",
        "--database",
        dbPath,
        "--user",
        "dev",
      ]),
    );
  const process = await spawnDeno("cli/funcx_service.ts", [
    "serve",
    "--database",
    dbPath,
    "--port",
    String(options.port ?? 0),
    "--amqp-url",
    options.amqpUrl,
    ...(options.broker ? ["--management-url", managementUrlOf(options.broker)] : []),
    "--rate-limit",
    String(options.rateLimit ?? 0),
    ...(options.args ?? []),
  ], {
    ...(options.env ? { env: options.env } : {}),
    logFile: join(options.dir, "service.log"),
    readyEvent: "listening",
    echo: options.echo ?? false,
  });
  const address = String(process.ready["address"]);
  return {
    process,
    address,
    clientId: creds.client_id,
    clientSecret: creds.client_secret,
    dbPath,
    amqpUrl: options.amqpUrl,
    env: {
      FUNCX_SERVICE_ADDRESS: address,
      FUNCX_SDK_CLIENT_ID: creds.client_id,
      FUNCX_SDK_CLIENT_SECRET: creds.client_secret,
    },
  };
}

/** A running endpoint process. */
export interface EndpointHandle {
  process: ChildHandle;
  endpointId: string;
}

/** Options of {@linkcode startEndpoint}. */
export interface StartEndpointOptions {
  service: ServiceHandle;
  /** Directory for the endpoint's config dir and log. */
  dir: string;
  /** Endpoint name. @default "default" */
  name?: string;
  /** Worker subprocesses. @default 2 */
  workers?: number;
  /** Copy logs to stderr. @default false */
  echo?: boolean;
  /** Extra `start` flags. */
  args?: string[];
  /**
   * Fields written into `config.yaml` over what is there (`engine` merged by field), e.g.
   * `{ prefetch: 5000, engine: { cores_per_worker: 0.01 } }`. @default none
   */
  config?: Record<string, unknown>;
  /** Seconds `start` may take to report it started. @default 60 */
  readyTimeoutS?: number;
}

/**
 * Runs `funcx-endpoint configure` (unless the endpoint is configured already) and then
 * `funcx-endpoint start --foreground` against a service; resolves once it consumes tasks.
 */
export async function startEndpoint(options: StartEndpointOptions): Promise<EndpointHandle> {
  const name = options.name ?? "default";
  const env = { ...options.service.env, FUNCX_CONFIG_DIR: join(options.dir, "config") };
  try {
    await Deno.stat(join(options.dir, "config", name, "config.yaml"));
  } catch {
    await runDeno("cli/funcx_endpoint.ts", ["configure", name], env);
  }
  if (options.config) {
    const file = join(options.dir, "config", name, "config.yaml");
    const raw = (parseYaml(await Deno.readTextFile(file)) ?? {}) as Record<string, unknown>;
    const { engine, ...rest } = options.config;
    const merged: Record<string, unknown> = { ...raw, ...rest };
    if (engine !== undefined) merged["engine"] = { ...(raw["engine"] ?? {}), ...engine };
    await Deno.writeTextFile(file, stringifyYaml(merged));
  }
  const process = await spawnDeno("cli/funcx_endpoint.ts", [
    "start",
    name,
    "--foreground",
    "--workers",
    String(options.workers ?? 2),
    ...(options.args ?? []),
  ], {
    env,
    logFile: join(options.dir, `endpoint-${name}.log`),
    readyEvent: "started",
    echo: options.echo ?? false,
    ...(options.readyTimeoutS === undefined ? {} : { readyTimeoutS: options.readyTimeoutS }),
  });
  return { process, endpointId: String(process.ready["endpoint_id"]) };
}

/** A broker vhost, a service and one endpoint. */
export interface Stack extends AsyncDisposable {
  dir: string;
  vhost: string;
  service: ServiceHandle;
  endpoint: EndpointHandle;
  stop(): Promise<void>;
}

/** Options of {@linkcode startStack}. */
export interface StartStackOptions {
  /** Worker subprocesses of the endpoint. @default 2 */
  workers?: number;
  /** Copy logs to stderr. @default false */
  echo?: boolean;
  /** Broker to use. @default {@linkcode sharedBroker} */
  broker?: BrokerAccess;
  /** Fields written into the endpoint's `config.yaml` (see {@linkcode StartEndpointOptions}). */
  config?: Record<string, unknown>;
  /** Extra arguments of `funcx-service serve`. */
  serviceArgs?: string[];
}

/** Starts a service and an endpoint in a fresh vhost; `stop()` tears all of it down. */
export async function startStack(options: StartStackOptions = {}): Promise<Stack> {
  const access = options.broker ?? await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-stack-" });
  const vhost = `funcx-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(access, vhost);
  let service: ServiceHandle | undefined;
  try {
    service = await startService({
      dir,
      amqpUrl,
      echo: options.echo ?? false,
      broker: access,
      ...(options.serviceArgs ? { args: options.serviceArgs } : {}),
    });
    const endpoint = await startEndpoint({
      service,
      dir,
      workers: options.workers ?? 2,
      echo: options.echo ?? false,
      ...(options.config ? { config: options.config } : {}),
    });
    const svc = service;
    const stop = async () => {
      await endpoint.process.stop();
      await svc.process.stop();
      await deleteVhost(access, vhost).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    };
    return { dir, vhost, service: svc, endpoint, stop, [Symbol.asyncDispose]: stop };
  } catch (err) {
    await service?.process.stop();
    await deleteVhost(access, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}
