/**
 * A private RabbitMQ cluster of several nodes on this machine, for the tests of losing a broker
 * node. Each node is a {@linkcode RabbitBroker} of its own (its own name, AMQP, management and
 * distribution ports, and directory); they share one Erlang cookie, one administrator password
 * and one `epmd`, which the cluster runs (a node stopped or killed must not take the others'
 * name registrations with it). The second and later nodes join the first with
 * `rabbitmqctl stop_app; join_cluster; start_app`.
 *
 * The `epmd` runs under the same kind of watcher as a node: it reads a pipe only this process
 * holds, so it goes away when this process does.
 *
 * @module
 */
import { freePorts, randomHex } from "./_os.ts";
import { RabbitBroker, type StartBrokerOptions } from "./rabbitmq.ts";
import { until } from "./until.ts";

/** Options of {@linkcode RabbitCluster.start}. */
export interface StartClusterOptions {
  /** Nodes in the cluster. @default 3 */
  nodes?: number;
  /** Copy the servers' output to this process's stderr. @default false */
  verbose?: boolean;
}

/**
 * A private cluster of RabbitMQ nodes, running until {@linkcode stop}.
 *
 * @example A one-node cluster (the tests use three)
 * ```ts
 * import assert from "node:assert/strict";
 * await using cluster = await RabbitCluster.start({ nodes: 1 });
 * assert.equal(cluster.amqpUrls.length, 1); // one URL per node
 * ```
 */
export class RabbitCluster implements AsyncDisposable {
  /** The nodes; `nodes[0]` is the one the others joined. */
  readonly nodes: readonly RabbitBroker[];
  readonly #epmd: Deno.ChildProcess;
  readonly #epmdStdin: WritableStreamDefaultWriter<Uint8Array>;
  #stopping: Promise<void> | undefined;

  private constructor(nodes: RabbitBroker[], epmd: Deno.ChildProcess) {
    this.nodes = nodes;
    this.#epmd = epmd;
    this.#epmdStdin = epmd.stdin.getWriter();
  }

  /**
   * Starts the nodes (at the same time), joins them into one cluster and resolves once
   * `cluster_status` on the first node lists every node as running.
   */
  static async start(options: StartClusterOptions = {}): Promise<RabbitCluster> {
    const count = options.nodes ?? 3;
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(`Cannot start a RabbitMQ cluster of ${count} nodes: give 1 or more`);
    }
    const [epmdPort] = freePorts(1) as [number];
    const epmd = new Deno.Command("setsid", {
      args: [
        "sh",
        "-c",
        'epmd -port "$1" -address 127.0.0.1 </dev/null & pid=$!; cat >/dev/null; kill "$pid"',
        "funcx-cluster-epmd",
        String(epmdPort),
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    epmd.unref();
    const secrets = {
      cookie: randomHex(20).toUpperCase(),
      adminPassword: randomHex(32),
      epmdPort,
    };
    const startOne = (): Promise<RabbitBroker> => {
      const o: StartBrokerOptions = { cluster: secrets };
      if (options.verbose) o.verbose = true;
      return RabbitBroker.start(o);
    };
    const started = await Promise.allSettled(Array.from({ length: count }, startOne));
    const nodes = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
    const cluster = new RabbitCluster(nodes, epmd);
    try {
      const failed = started.find((s) => s.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const [first, ...others] = nodes as [RabbitBroker, ...RabbitBroker[]];
      for (const node of others) {
        await node.rabbitmqctl(["stop_app"]);
        await node.rabbitmqctl(["join_cluster", first.info.nodeName]);
        await node.rabbitmqctl(["start_app"]);
      }
      await cluster.waitRunning(count);
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  /** The AMQP URL of every node, in node order. */
  get amqpUrls(): string[] {
    return this.nodes.map((n) => n.info.amqpUrl);
  }

  /** The management URL of every node, in node order. */
  get managementUrls(): string[] {
    return this.nodes.map((n) => n.info.managementUrl);
  }

  /** A node that is running now (the first such), for `rabbitmqctl` and the management API. */
  liveNode(): RabbitBroker {
    const node = this.nodes.find((n) => n.state === "running");
    if (!node) throw new Error("Cannot pick a RabbitMQ node: no node of the cluster is running");
    return node;
  }

  /**
   * Waits until `count` nodes are running members of the cluster, as a running node sees it
   * (60 s at most).
   */
  async waitRunning(count: number): Promise<void> {
    await until(
      `${count} running nodes in the RabbitMQ cluster`,
      async () => {
        const out = await this.liveNode().rabbitmqctl(["cluster_status", "--formatter", "json"]);
        const status = JSON.parse(out.slice(out.indexOf("{"))) as { running_nodes?: string[] };
        return (status.running_nodes?.length ?? 0) >= count;
      },
      60_000,
      250,
    );
  }

  /** Stops every node and the cluster's epmd; idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await Promise.all(this.nodes.map((n) => n.stop()));
      this.#epmd.ref();
      await this.#epmdStdin.close().catch(() => {});
      await this.#epmd.status;
    })();
    return this.#stopping;
  }

  /** Same as {@linkcode stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
