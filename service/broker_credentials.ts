/**
 * Per-endpoint and per-user broker credentials, created through the RabbitMQ management API.
 * An endpoint's user may consume only its own task queue and publish only to `results` with its
 * own routing key (`<endpoint_id>.results`, or that key and a task group's route after it: the SDK
 * takes a result that came straight from an endpoint only for a task it sent to that endpoint);
 * an SDK user's may only read its own result queues (`<prefix><task_group_id>`).
 * An endpoint's password is new at each registration (re-registration rotates it). A user's is
 * stable, derived from the management login and the user id, so a second process asking for a
 * login never cuts off the streams of the first.
 *
 * @module
 */
import { randomSecret } from "./auth.ts";
import { resultRoutingKey, RESULTS_EXCHANGE, taskQueueName } from "./broker.ts";

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

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The result queue name prefix of a user. */
export function userQueuePrefix(userId: string): string {
  return `user-${userId}.`;
}

/** A broker login. */
export interface BrokerLogin {
  username: string;
  password: string;
}

/** Creates and scopes broker users. */
export class BrokerCredentials {
  readonly #nodes: readonly ManagementAccess[];
  /** The node whose API answered last; a node that does not answer passes the turn on. */
  #live = 0;
  readonly #vhost: string;

  /**
   * `vhost` is the one the service's own AMQP URL names; `access` is one node's API or those of
   * every node of a cluster (the first one's password keys the users' logins).
   */
  constructor(access: ManagementAccess | readonly ManagementAccess[], vhost: string) {
    this.#nodes = Array.isArray(access) ? [...access] : [access as ManagementAccess];
    if (this.#nodes.length === 0) throw new TypeError("BrokerCredentials needs a management URL");
    this.#vhost = vhost;
  }

  get #access(): ManagementAccess {
    return this.#nodes[0]!;
  }

  /** Sends one request to the first node whose API answers at all, starting at the live one. */
  async #fetch(path: string, init: RequestInit): Promise<Response> {
    let last: unknown;
    for (let i = 0; i < this.#nodes.length; i++) {
      const n = (this.#live + i) % this.#nodes.length;
      const node = this.#nodes[n]!;
      try {
        const res = await fetch(`${node.url}/api/${path}`, {
          ...init,
          headers: {
            authorization: `Basic ${btoa(`${node.user}:${node.password}`)}`,
            "content-type": "application/json",
          },
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

  async #api(method: string, path: string, body?: unknown): Promise<void> {
    const res = await this.#fetch(path, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok && !(method === "DELETE" && res.status === 404)) {
      throw new Error(`Broker management ${method} /api/${path} answered ${res.status}: ${text}`);
    }
  }

  async #user(
    username: string,
    perms: { configure: string; write: string; read: string },
    password: string = randomSecret(24),
  ): Promise<BrokerLogin> {
    const u = encodeURIComponent(username);
    const v = encodeURIComponent(this.#vhost);
    await this.#api("PUT", `users/${u}`, { password, tags: "" });
    await this.#api("PUT", `permissions/${v}/${u}`, perms);
    return { username, password };
  }

  /** A fresh login for an endpoint (rotates any earlier password). */
  async forEndpoint(endpointId: string): Promise<BrokerLogin> {
    const login = await this.#user(`endpoint-${endpointId}`, {
      configure: "^$",
      write: `^${escapeRe(RESULTS_EXCHANGE)}$`,
      read: `^${escapeRe(taskQueueName(endpointId))}$`,
    });
    // Topic permissions pin the routing key it may publish results with.
    await this.#api(
      "PUT",
      `topic-permissions/${encodeURIComponent(this.#vhost)}/${encodeURIComponent(login.username)}`,
      {
        exchange: RESULTS_EXCHANGE,
        write: `^${escapeRe(resultRoutingKey(endpointId))}(\\..+)?$`,
        read: "^$",
      },
    );
    return login;
  }

  /**
   * The login of an SDK user, able to read only its own result queues. The password is the same
   * at every call (an HMAC of the user id keyed with the management password), and it is set
   * again each time, so a broker that lost its users gets it back.
   */
  async forUser(userId: string): Promise<BrokerLogin> {
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(this.#access.password),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const mac = await crypto.subtle.sign(
      "HMAC",
      key,
      new TextEncoder().encode(`funcx result stream login\0${this.#vhost}\0${userId}`),
    );
    const password = btoa(String.fromCharCode(...new Uint8Array(mac)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return await this.#user(`user-${userId}`, {
      configure: "^$",
      write: "^$",
      read: `^${escapeRe(userQueuePrefix(userId))}.*`,
    }, password);
  }

  /** Removes an endpoint's broker user. */
  async removeEndpoint(endpointId: string): Promise<void> {
    await this.#api("DELETE", `users/${encodeURIComponent(`endpoint-${endpointId}`)}`);
  }
}

/** `amqpUrl` with its credentials replaced by `login`. */
export function withLogin(amqpUrl: string, login: BrokerLogin): string {
  const u = new URL(amqpUrl);
  u.username = encodeURIComponent(login.username);
  u.password = encodeURIComponent(login.password);
  return u.toString();
}

/** The vhost an AMQP URL names (`/` when none). */
export function vhostOf(amqpUrl: string): string {
  const path = new URL(amqpUrl).pathname;
  return path.length > 1 ? decodeURIComponent(path.slice(1)) : "/";
}
