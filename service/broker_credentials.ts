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
import type { BrokerManagement } from "./broker_management.ts";

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
  readonly #management: BrokerManagement;
  readonly #vhost: string;

  /**
   * `vhost` is the one the service's own AMQP URL names; `management` is the broker's API (its
   * first node's password keys the users' logins).
   */
  constructor(management: BrokerManagement, vhost: string) {
    this.#management = management;
    this.#vhost = vhost;
  }

  async #user(
    username: string,
    perms: { configure: string; write: string; read: string },
    password: string = randomSecret(24),
  ): Promise<BrokerLogin> {
    const u = encodeURIComponent(username);
    const v = encodeURIComponent(this.#vhost);
    await this.#management.call("PUT", `users/${u}`, { password, tags: "" });
    await this.#management.call("PUT", `permissions/${v}/${u}`, perms);
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
    await this.#management.call(
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
      new TextEncoder().encode(this.#management.primary.password),
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
    await this.#management.call("DELETE", `users/${encodeURIComponent(`endpoint-${endpointId}`)}`);
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
