/**
 * A service process on its own vhost, without an endpoint, for the service's API tests: tests
 * act as users (several API clients) and, with the broker logins the service hands out, as
 * endpoints speaking AMQP themselves.
 *
 * @module
 */
import { join } from "node:path";
import { FuncXClient } from "../../mod.ts";
import { runDeno } from "./process.ts";
import { type TestDatabase, testDatabase } from "./postgres.ts";
import {
  type BrokerAccess,
  clientOf,
  createVhost,
  deleteVhost,
  type ServiceHandle,
  sharedBroker,
  startService,
} from "./stack.ts";

/** A running service for API tests. */
export interface ServiceFixture extends AsyncDisposable {
  broker: BrokerAccess;
  dir: string;
  vhost: string;
  service: ServiceHandle;
  /** The first user's client. */
  client: FuncXClient;
  /** Makes an API client (and its user) with the service's admin command. */
  newUser(name: string): Promise<{ client: FuncXClient; clientId: string; clientSecret: string }>;
  /** Runs `funcx-service` with `args` on this service's database. */
  admin(args: string[], stdin?: string): Promise<string>;
  /** Restarts the service process on the same database and broker. */
  restart(): Promise<void>;
  /** An access token of the first user. */
  token(): Promise<string>;
}

/** Options of {@linkcode startServiceOnly}. */
export interface ServiceOnlyOptions {
  /** Extra `serve` flags. */
  args?: string[];
  /** Requests per client per window. @default 0 (off) */
  rateLimit?: number;
  /** The store: a SQLite file, or a fresh database on the test run's PostgreSQL. @default "sqlite" */
  store?: "sqlite" | "postgres";
}

/** Starts a service (no endpoint) in a fresh vhost. */
export async function startServiceOnly(options: ServiceOnlyOptions = {}): Promise<ServiceFixture> {
  const broker = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-svc-" });
  const vhost = `svc-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(broker, vhost);
  const pg: TestDatabase | undefined = options.store === "postgres"
    ? await testDatabase()
    : undefined;
  const database = pg?.url ?? join(dir, "service.db");
  const start = () =>
    startService({
      dir,
      amqpUrl,
      broker,
      database,
      rateLimit: options.rateLimit ?? 0,
      args: ["--device-interval", "1", ...(options.args ?? [])],
    });
  let service = await start().catch(async (err) => {
    await deleteVhost(broker, vhost).catch(() => {});
    await pg?.drop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  });
  const client = clientOf(service);
  const admin = (args: string[], stdin?: string) =>
    runDeno("cli/funcx_service.ts", [...args, "--database", service.dbPath], {}, stdin);
  const fixture: ServiceFixture = {
    broker,
    dir,
    vhost,
    get service() {
      return service;
    },
    client,
    admin,
    async newUser(name) {
      const creds = JSON.parse(await admin(["client", "create", "--user", name]));
      return {
        client: new FuncXClient({
          serviceAddress: service.address,
          clientId: creds.client_id,
          clientSecret: creds.client_secret,
        }),
        clientId: creds.client_id,
        clientSecret: creds.client_secret,
      };
    },
    async restart() {
      const port = new URL(service.address).port;
      await service.process.stop();
      service = await startService({
        dir,
        amqpUrl,
        broker,
        database,
        port: Number(port),
        rateLimit: options.rateLimit ?? 0,
        args: ["--device-interval", "1", ...(options.args ?? [])],
        existingClient: { clientId: service.clientId, clientSecret: service.clientSecret },
      });
    },
    async token() {
      const res = await fetch(`${service.address}/v2/oauth/token`, {
        method: "POST",
        body: new URLSearchParams({
          grant_type: "client_credentials",
          client_id: service.clientId,
          client_secret: service.clientSecret,
        }),
      });
      return (await res.json()).access_token;
    },
    async [Symbol.asyncDispose]() {
      await service.process.stop();
      await deleteVhost(broker, vhost).catch(() => {});
      await pg?.drop().catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  return fixture;
}
