/**
 * A TCP proxy for fault injection: it sits between processes and a server (the broker's AMQP
 * port, the service's HTTP port) and forwards bytes both ways with Nagle off. A test can cut
 * every live connection abruptly (both sockets closed, so the peers see the stream end with no
 * AMQP or HTTP goodbye) and refuse or drop new connections for a while, as a network cut or a
 * restarting firewall would; it can silence the live connections (they stay open, but nothing
 * comes back from the target, as over a link that drops packets); and it can watch (or stop) the
 * bytes going through with a tap.
 *
 * @module
 */

/** Which way a chunk goes: `"up"` from a client to the target, `"down"` back. */
export type ProxyDirection = "up" | "down";

/**
 * Sees each chunk before it is forwarded; `link` numbers the connection (from 1). Returning
 * `false` cuts that connection instead of forwarding the chunk.
 */
export type ProxyTap = (direction: ProxyDirection, chunk: Uint8Array, link: number) => unknown;

/** How new connections are treated while the proxy is cut. */
export type CutMode = "drop" | "refuse";

/** Options of {@linkcode TcpProxy.start}. */
export interface TcpProxyOptions {
  /** Port of the target. */
  targetPort: number;
  /** Host of the target. @default "127.0.0.1" */
  targetHost?: string;
  /** Port the proxy listens on, on 127.0.0.1; 0 for any free one. @default 0 */
  port?: number;
}

/** Options of {@linkcode TcpProxy.cut}. */
export interface CutOptions {
  /** Restore by itself after this many ms; `undefined`: only {@linkcode TcpProxy.restore}. */
  forMs?: number;
  /**
   * `"drop"`: accept new connections and close them at once (the client sees the stream end);
   * `"refuse"`: stop listening, so connecting fails with ECONNREFUSED. @default "drop"
   */
  mode?: CutMode;
}

interface Link {
  id: number;
  client: Deno.TcpConn;
  target: Deno.TcpConn | undefined;
  closed: boolean;
}

/**
 * A running proxy on 127.0.0.1.
 *
 * @example
 * ```ts
 * import { TcpProxy } from "./tcp_proxy.ts";
 * const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * await using proxy = TcpProxy.start({ targetPort: server.addr.port });
 * console.assert(proxy.port !== server.addr.port);
 * server.close();
 * ```
 */
export class TcpProxy implements AsyncDisposable {
  /** The port clients connect to. */
  readonly port: number;
  readonly #targetHost: string;
  readonly #targetPort: number;
  readonly #links = new Map<number, Link>();
  readonly #taps = new Set<ProxyTap>();
  /** Links whose bytes from the target are swallowed (see {@linkcode silence}). */
  readonly #silenced = new Set<number>();
  readonly #tasks = new Set<Promise<void>>();
  #listener: Deno.TcpListener | undefined;
  #nextId = 1;
  #cut: CutMode | undefined;
  #restoreTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  private constructor(listener: Deno.TcpListener, options: TcpProxyOptions) {
    this.port = listener.addr.port;
    this.#targetHost = options.targetHost ?? "127.0.0.1";
    this.#targetPort = options.targetPort;
    this.#serve(listener);
  }

  /** Starts listening at once. */
  static start(options: TcpProxyOptions): TcpProxy {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: options.port ?? 0 });
    return new TcpProxy(listener, options);
  }

  /** Connections open through the proxy now. */
  get liveConnections(): number {
    return this.#links.size;
  }

  /** Whether the proxy is cut (until {@linkcode restore}). */
  get isCut(): boolean {
    return this.#cut !== undefined;
  }

  /** Adds a tap that sees every chunk; returns the function that removes it. */
  tap(fn: ProxyTap): () => void {
    this.#taps.add(fn);
    return () => this.#taps.delete(fn);
  }

  /**
   * Closes every live connection on both sides without a word to either peer, and treats new
   * ones as `mode` says until {@linkcode restore} (or `forMs` later). Returns how many
   * connections were cut. Cutting a cut proxy cuts again and resets the timer.
   */
  cut(options: CutOptions = {}): number {
    if (this.#closed) throw new Error("Cannot cut a closed proxy");
    const mode = options.mode ?? "drop";
    clearTimeout(this.#restoreTimer);
    this.#restoreTimer = undefined;
    if (mode === "refuse" && this.#listener !== undefined) {
      this.#listener.close();
      this.#listener = undefined;
    }
    // Switching from refuse to drop needs the port back.
    if (mode === "drop" && this.#listener === undefined) this.#relisten();
    this.#cut = mode;
    const n = this.#links.size;
    for (const link of [...this.#links.values()]) this.#close(link);
    if (options.forMs !== undefined) {
      this.#restoreTimer = setTimeout(() => this.restore(), options.forMs);
    }
    return n;
  }

  /**
   * Keeps every live connection open but stops forwarding what the target sends on them (it is
   * read and dropped), as a link whose packets are lost would: the client sees neither an answer
   * nor an end. Connections made later work. `links` picks some by number (as a tap sees them);
   * default every live one. Returns how many connections were silenced.
   */
  silence(links?: Iterable<number>): number {
    const ids = links ? [...links].filter((id) => this.#links.has(id)) : [...this.#links.keys()];
    for (const id of ids) this.#silenced.add(id);
    return ids.length;
  }

  /** Accepts and forwards connections again; a proxy that is not cut is left as it is. */
  restore(): void {
    clearTimeout(this.#restoreTimer);
    this.#restoreTimer = undefined;
    if (this.#cut === undefined || this.#closed) return;
    this.#cut = undefined;
    if (this.#listener === undefined) this.#relisten();
  }

  /** Stops listening and closes every connection; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#restoreTimer);
    this.#listener?.close();
    this.#listener = undefined;
    for (const link of [...this.#links.values()]) this.#close(link);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #relisten(attempt = 1): void {
    try {
      this.#serve(Deno.listen({ hostname: "127.0.0.1", port: this.port }));
    } catch (err) {
      // The closed listener's socket goes away once its pending accept is cancelled.
      if (!(err instanceof Deno.errors.AddrInUse) || attempt >= 100) throw err;
      this.#restoreTimer = setTimeout(() => {
        if (this.#cut === undefined && !this.#closed) this.#relisten(attempt + 1);
      }, 20);
    }
  }

  #track(p: Promise<void>): void {
    this.#tasks.add(p);
    void p.finally(() => this.#tasks.delete(p));
  }

  #serve(listener: Deno.TcpListener): void {
    this.#listener = listener;
    this.#track((async () => {
      try {
        for await (const conn of listener) {
          if (this.#cut !== undefined || this.#closed) {
            conn.close();
            continue;
          }
          this.#track(this.#link(conn));
        }
      } catch {
        // the listener was closed
      }
    })());
  }

  async #link(client: Deno.TcpConn): Promise<void> {
    const link: Link = { id: this.#nextId++, client, target: undefined, closed: false };
    this.#links.set(link.id, link);
    try {
      client.setNoDelay(true);
      link.target = await Deno.connect({ hostname: this.#targetHost, port: this.#targetPort });
      link.target.setNoDelay(true);
    } catch {
      this.#close(link);
      return;
    }
    // A cut while connecting leaves the new socket to close here.
    if (link.closed) {
      link.target.close();
      return;
    }
    await Promise.all([
      this.#pump(link, "up", client, link.target),
      this.#pump(link, "down", link.target, client),
    ]);
  }

  async #pump(
    link: Link,
    direction: ProxyDirection,
    from: Deno.TcpConn,
    to: Deno.TcpConn,
  ): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null || link.closed) break;
        const chunk = buf.subarray(0, n);
        let pass = true;
        for (const tap of this.#taps) if (tap(direction, chunk, link.id) === false) pass = false;
        if (!pass || link.closed) break;
        if (direction === "down" && this.#silenced.has(link.id)) continue;
        for (let off = 0; off < n;) off += await to.write(chunk.subarray(off));
      }
    } catch {
      // a side went away or the link was cut
    }
    this.#close(link);
  }

  #close(link: Link): void {
    if (link.closed) return;
    link.closed = true;
    this.#links.delete(link.id);
    this.#silenced.delete(link.id);
    for (const conn of [link.client, link.target]) {
      try {
        conn?.close();
      } catch {
        // already closed
      }
    }
  }
}
