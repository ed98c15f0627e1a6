/**
 * A round-robin TCP load balancer on 127.0.0.1, as sites put in front of service replicas: each
 * new connection goes to the next target that accepts it (a dead replica is skipped), and its
 * bytes are piped both ways until either side closes.
 *
 * @module
 */

/**
 * A running load balancer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoadBalancer } from "./load_balancer.ts";
 * const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * await using lb = LoadBalancer.start([server.addr.port]);
 * assert.notEqual(lb.port, server.addr.port);
 * server.close();
 * ```
 */
export class LoadBalancer implements AsyncDisposable {
  /** The port clients connect to. */
  readonly port: number;
  readonly #targets: readonly number[];
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.TcpConn>();
  #next = 0;

  private constructor(listener: Deno.TcpListener, targets: readonly number[]) {
    this.#listener = listener;
    this.port = listener.addr.port;
    this.#targets = targets;
    void this.#serve();
  }

  /** Listens at once on a free port, in front of `targetPorts` on 127.0.0.1. */
  static start(targetPorts: readonly number[]): LoadBalancer {
    if (targetPorts.length === 0) throw new TypeError("A load balancer needs at least one target");
    return new LoadBalancer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), targetPorts);
  }

  async #serve(): Promise<void> {
    for await (const client of this.#listener) void this.#pipe(client);
  }

  async #pipe(client: Deno.TcpConn): Promise<void> {
    this.#conns.add(client);
    let target: Deno.TcpConn | undefined;
    for (let i = 0; i < this.#targets.length && !target; i++) {
      const port = this.#targets[this.#next++ % this.#targets.length]!;
      target = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
    }
    if (!target) {
      this.#conns.delete(client);
      return client.close();
    }
    this.#conns.add(target);
    const close = () => {
      for (const c of [client, target]) {
        if (this.#conns.delete(c)) {
          try {
            c.close();
          } catch {
            // already closed
          }
        }
      }
    };
    await Promise.all([
      client.readable.pipeTo(target.writable, { preventClose: true }).catch(() => {}),
      target.readable.pipeTo(client.writable, { preventClose: true }).catch(() => {}),
    ].map((p) => p.finally(close)));
  }

  /** Stops listening and closes every connection; idempotent. */
  close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    this.#conns.clear();
    return Promise.resolve();
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
