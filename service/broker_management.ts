/**
 * The RabbitMQ management API as the service uses it: one node's, or those of every node of a
 * cluster (they share their users and vhosts), asked in turn until one answers. The broker
 * credentials (`broker_credentials.ts`) create and scope logins through it, and the service asks
 * it at start how many nodes the broker has and what type its queues already are
 * (`queue_type_choice.ts`).
 *
 * @module
 */

/** Where the management API is and how to log in to it. */
export interface ManagementAccess {
  /** Base URL, for example `http://127.0.0.1:15672`. */
  url: string;
  user: string;
  password: string;
}

/**
 * Parses a comma-separated list of management URLs (the nodes of a cluster, sharing their users)
 * into {@linkcode ManagementAccess} entries.
 */
export function parseManagementUrls(text: string): ManagementAccess[] {
  const urls = text.split(",").map((u) => u.trim()).filter((u) => u !== "");
  if (urls.length === 0) throw new TypeError("Management URL list is empty: give at least one");
  return urls.map(parseManagementUrl);
}

/** Parses `http://user:pass@host:port` into {@linkcode ManagementAccess}. */
export function parseManagementUrl(url: string): ManagementAccess {
  const u = new URL(url);
  if (!u.username) {
    throw new TypeError(
      `Management URL "${u.origin}" needs credentials: http://user:pass@host:port`,
    );
  }
  const access = {
    url: u.origin,
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  };
  return access;
}

/** A broker's management API, over one node or several. */
export class BrokerManagement {
  readonly #nodes: readonly ManagementAccess[];
  /** The node whose API answered last; a node that does not answer passes the turn on. */
  #live = 0;

  /** `nodes`: one node's API, or those of every node of a cluster. */
  constructor(nodes: readonly ManagementAccess[]) {
    if (nodes.length === 0) throw new TypeError("BrokerManagement needs a management URL");
    this.#nodes = [...nodes];
  }

  /** The first node's access (its password keys the users' result stream logins). */
  get primary(): ManagementAccess {
    return this.#nodes[0]!;
  }

  /** Sends one request to the first node whose API answers at all, starting at the live one. */
  async request(method: string, path: string, body?: unknown): Promise<Response> {
    let last: unknown;
    for (let i = 0; i < this.#nodes.length; i++) {
      const n = (this.#live + i) % this.#nodes.length;
      const node = this.#nodes[n]!;
      try {
        const res = await fetch(`${node.url}/api/${path}`, {
          method,
          headers: {
            authorization: `Basic ${btoa(`${node.user}:${node.password}`)}`,
            "content-type": "application/json",
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        // A node that is up but not in the cluster (yet) answers 503: try another.
        if (res.status === 503 && i < this.#nodes.length - 1) {
          await res.body?.cancel();
          continue;
        }
        this.#live = n;
        return res;
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`No broker management API answered (${String(last)})`, { cause: last });
  }

  /** A change (PUT, DELETE); throws unless it was done (a DELETE of nothing counts as done). */
  async call(method: string, path: string, body?: unknown): Promise<void> {
    const res = await this.request(method, path, body);
    const text = await res.text();
    if (!res.ok && !(method === "DELETE" && res.status === 404)) {
      throw new Error(`Broker management ${method} /api/${path} answered ${res.status}: ${text}`);
    }
  }

  /** A GET's JSON answer; undefined when there is no such thing (404). */
  async read<T>(path: string): Promise<T | undefined> {
    const res = await this.request("GET", path);
    const text = await res.text();
    if (res.status === 404) return undefined;
    if (!res.ok) {
      throw new Error(`Broker management GET /api/${path} answered ${res.status}: ${text}`);
    }
    return JSON.parse(text) as T;
  }
}
