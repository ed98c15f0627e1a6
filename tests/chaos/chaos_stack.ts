/**
 * The real processes of a chaos run, each of which a phase may kill or cut off: a private
 * RabbitMQ node (its own, since it is stopped and started again with its data), a TCP proxy in
 * front of its AMQP port, a `funcx-service` on SQLite (restarted on the same database and port),
 * a TCP proxy in front of the service's HTTP port, and a `funcx-endpoint` started with the CLI.
 *
 * The service talks to the broker directly, but the AMQP URL it hands out to endpoints and to
 * SDK result streams (`--public-amqp-url`) is the proxy's, so a cut at the proxy severs the
 * endpoint's and the executors' broker links and nothing else. The executors reach the service
 * through the HTTP proxy, whose tap lets a phase kill the service with a submit in flight.
 *
 * @module
 */
import { join } from "node:path";
import { FuncXClient } from "../../mod.ts";
import { RabbitBroker } from "../harness/rabbitmq.ts";
import { runDeno } from "../harness/process.ts";
import {
  type BrokerAccess,
  brokerAccess,
  createVhost,
  type EndpointHandle,
  type ServiceHandle,
  startEndpoint,
  startService,
} from "../harness/stack.ts";
import { TcpProxy } from "../harness/tcp_proxy.ts";

const ENDPOINT_NAME = "chaos";

/** Options of {@linkcode ChaosStack.start}. */
export interface ChaosStackOptions {
  /** Workers of the endpoint's one manager. @default 2 */
  workers?: number;
  /**
   * How the endpoint's local block runs its manager (`engine.local_manager`): in the daemon, or
   * as a subprocess. @default "in_process"
   */
  localManager?: "in_process" | "process";
  /** Copy every process's log to stderr. @default false */
  echo?: boolean;
}

/** The processes of a chaos run and the means to hurt them. */
export class ChaosStack implements AsyncDisposable {
  /** Working directory: database, logs, endpoint config, side-effect file, gates. */
  readonly dir: string;
  /** The file every task appends its line to. */
  readonly sideEffectFile: string;
  readonly broker: RabbitBroker;
  readonly access: BrokerAccess;
  /** Between endpoints/SDK streams and the broker. */
  readonly amqpProxy: TcpProxy;
  /** Between the executors and the service. */
  readonly httpProxy: TcpProxy;
  service: ServiceHandle;
  endpoint: EndpointHandle;
  readonly #options: Required<ChaosStackOptions>;
  readonly #serviceArgs: string[];
  readonly #amqpUrl: string;

  private constructor(
    init: {
      dir: string;
      broker: RabbitBroker;
      amqpProxy: TcpProxy;
      httpProxy: TcpProxy;
      service: ServiceHandle;
      endpoint: EndpointHandle;
      serviceArgs: string[];
      amqpUrl: string;
    },
    options: Required<ChaosStackOptions>,
  ) {
    this.dir = init.dir;
    this.sideEffectFile = join(init.dir, "side-effects.txt");
    this.broker = init.broker;
    this.access = brokerAccess(init.broker);
    this.amqpProxy = init.amqpProxy;
    this.httpProxy = init.httpProxy;
    this.service = init.service;
    this.endpoint = init.endpoint;
    this.#serviceArgs = init.serviceArgs;
    this.#amqpUrl = init.amqpUrl;
    this.#options = options;
  }

  /** Starts everything; on failure stops what was started. */
  static async start(options: ChaosStackOptions = {}): Promise<ChaosStack> {
    const o = {
      workers: options.workers ?? 2,
      localManager: options.localManager ?? "in_process",
      echo: options.echo ?? false,
    };
    const dir = await Deno.makeTempDir({ prefix: "funcx-chaos-" });
    const cleanup: Array<() => Promise<unknown>> = [
      () => Deno.remove(dir, { recursive: true }).catch(() => {}),
    ];
    try {
      await Deno.writeTextFile(join(dir, "side-effects.txt"), "");
      const broker = await RabbitBroker.start({ verbose: false });
      cleanup.unshift(() => broker.stop());
      const access = brokerAccess(broker);
      const amqpUrl = await createVhost(access, "chaos");
      const amqpProxy = TcpProxy.start({ targetPort: broker.info.amqpPort });
      cleanup.unshift(() => amqpProxy.close());
      const publicUrl = new URL(amqpUrl);
      publicUrl.port = String(amqpProxy.port);
      const serviceArgs = ["--public-amqp-url", publicUrl.toString()];
      const service = await startService({
        dir,
        amqpUrl,
        broker: access,
        echo: o.echo,
        args: serviceArgs,
      });
      cleanup.unshift(() => service.process.stop());
      const httpProxy = TcpProxy.start({ targetPort: Number(new URL(service.address).port) });
      cleanup.unshift(() => httpProxy.close());
      await configureEndpoint(dir, service, o.workers, o.localManager);
      const endpoint = await startEndpoint({
        service,
        dir,
        name: ENDPOINT_NAME,
        workers: o.workers,
        echo: o.echo,
      });
      return new ChaosStack({
        dir,
        broker,
        amqpProxy,
        httpProxy,
        service,
        endpoint,
        serviceArgs,
        amqpUrl,
      }, o);
    } catch (err) {
      for (const c of cleanup) await c();
      throw err;
    }
  }

  /** A client of the service that goes through the HTTP proxy. */
  client(): FuncXClient {
    return new FuncXClient({
      serviceAddress: `http://127.0.0.1:${this.httpProxy.port}`,
      clientId: this.service.clientId,
      clientSecret: this.service.clientSecret,
    });
  }

  /** The environment of a script that uses the service (through the HTTP proxy). */
  get clientEnv(): Record<string, string> {
    return {
      ...this.service.env,
      FUNCX_SERVICE_ADDRESS: `http://127.0.0.1:${this.httpProxy.port}`,
    };
  }

  /** SIGKILLs the service and waits until it is gone. */
  async killService(): Promise<void> {
    this.service.process.signal("SIGKILL");
    await this.service.process.status;
  }

  /** Starts the service again on the same database, port and API client. */
  async startService(): Promise<void> {
    this.service = await startService({
      dir: this.dir,
      amqpUrl: this.#amqpUrl,
      broker: this.access,
      echo: this.#options.echo,
      args: this.#serviceArgs,
      port: Number(new URL(this.service.address).port),
      database: this.service.dbPath,
      existingClient: { clientId: this.service.clientId, clientSecret: this.service.clientSecret },
    });
  }

  /** SIGKILLs the endpoint daemon (only the daemon) and waits until it is gone. */
  async killEndpoint(): Promise<void> {
    this.endpoint.process.signal("SIGKILL");
    await this.endpoint.process.status;
  }

  /** Starts the endpoint again with the CLI, from the same directory (same endpoint id). */
  async startEndpoint(): Promise<void> {
    this.endpoint = await startEndpoint({
      service: this.service,
      dir: this.dir,
      name: ENDPOINT_NAME,
      workers: this.#options.workers,
      echo: this.#options.echo,
    });
  }

  /**
   * Brings back whatever a phase left broken (a proxy still cut, a node down, a process that
   * exited) and returns a line for each repair, so that a phase's damage is reported by it and
   * does not spill into the next one.
   */
  async heal(): Promise<string[]> {
    const notes: string[] = [];
    this.amqpProxy.restore();
    this.httpProxy.restore();
    if (this.broker.state === "down") {
      notes.push("the RabbitMQ node was down");
      await this.broker.startNode();
    }
    const exited = async (h: { process: { status: Promise<Deno.CommandStatus> } }) => {
      const timeout = new Promise<undefined>((r) => setTimeout(() => r(undefined), 0));
      return await Promise.race([h.process.status, timeout]);
    };
    const serviceExit = await exited(this.service);
    if (serviceExit) {
      notes.push(`the service had exited with code ${serviceExit.code}`);
      await this.startService();
    }
    const endpointExit = await exited(this.endpoint);
    if (endpointExit) {
      const log = await this.endpoint.process.log();
      const last = log.trimEnd().split("\n").slice(-3).join(" | ");
      notes.push(`the endpoint daemon had exited with code ${endpointExit.code} (log: ${last})`);
      await this.startEndpoint();
    }
    return notes;
  }

  /** Stops every process and removes the directory; idempotent enough for `finally`. */
  async close(): Promise<void> {
    this.amqpProxy.restore();
    await this.endpoint.process.stop(5).catch(() => {});
    await this.service.process.stop(5).catch(() => {});
    await this.httpProxy.close();
    await this.amqpProxy.close();
    await this.broker.stop();
    // Workers of a killed manager are orphans; the side-effect file names every worker.
    await killStrays(this.sideEffectFile, this.dir);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Writes the endpoint's config with the CLI: workers may write only the chaos directory. */
async function configureEndpoint(
  dir: string,
  service: ServiceHandle,
  workers: number,
  localManager: string,
): Promise<void> {
  const template = join(dir, "endpoint-template.yaml");
  await Deno.writeTextFile(
    template,
    `display_name: chaos
detach_endpoint: false
heartbeat_period: 5
engine:
  max_workers_per_node: ${workers}
  local_manager: ${localManager}
  strategy_period: 1
  permissions:
    all: false
    read: [${JSON.stringify(dir)}]
    write: [${JSON.stringify(dir)}]
`,
  );
  await runDeno("cli/funcx_endpoint.ts", [
    "configure",
    ENDPOINT_NAME,
    "--endpoint-config",
    template,
  ], { ...service.env, FUNCX_CONFIG_DIR: join(dir, "config") });
}

/** SIGKILLs the workers named in the side-effect file that are still alive. */
async function killStrays(file: string, dir: string): Promise<void> {
  const text = await Deno.readTextFile(file).catch(() => "");
  const pids = new Set(text.split("\n").map((l) => Number(l.split(" ")[1])).filter((p) => p > 0));
  for (const pid of pids) {
    // A worker's command line names the directory it may write (a reused pid does not).
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
    if (!cmdline.includes("worker_main") || !cmdline.includes(dir)) continue;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}
