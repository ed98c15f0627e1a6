/**
 * The endpoint routes of `FuncXClient`: registering an endpoint (what the endpoint daemon does
 * on start), listing, reading, locking and deleting endpoints, and each endpoint's allow-list of
 * functions.
 *
 * @module
 */
import type { ClientTransport, RequestOptions } from "./_client_transport.ts";

/**
 * Options of {@linkcode FuncXClient.registerEndpoint}.
 *
 * @example Register again under a known id
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RegisterEndpointOptions } from "@funcx/sdk";
 * const options: RegisterEndpointOptions = {
 *   endpointId: crypto.randomUUID(),
 *   metadata: { hostname: "login1" },
 * };
 * assert.equal(options.metadata?.["hostname"], "login1");
 * ```
 */
export interface RegisterEndpointOptions extends RequestOptions {
  /** The endpoint's id, for re-registration. @default a new one */
  endpointId?: string;
  /** Facts about the endpoint (host, user, version, config). @default {} */
  metadata?: Record<string, unknown>;
}

/**
 * Where an endpoint consumes tasks and publishes results, as registration returns it.
 *
 * @example Where an endpoint reads tasks
 * ```ts
 * import assert from "node:assert/strict";
 * import type { EndpointRegistration } from "@funcx/sdk";
 * function taskQueue(reg: EndpointRegistration): string {
 *   return reg.task_queue_info.queue;
 * }
 * const url = "amqp://ep:secret@127.0.0.1:5672/";
 * const reg: EndpointRegistration = {
 *   endpoint_id: "e1",
 *   task_queue_info: { connection_url: url, exchange: "tasks", queue: "e1.tasks" },
 *   result_queue_info: {
 *     connection_url: url,
 *     exchange: "results",
 *     queue: "results",
 *     queue_publish_kwargs: {
 *       exchange: "results",
 *       routing_key: "results",
 *       mandatory: true,
 *       properties: { delivery_mode: 2 },
 *     },
 *   },
 * };
 * assert.equal(taskQueue(reg), "e1.tasks");
 * ```
 */
export interface EndpointRegistration {
  /** The endpoint's id. */
  endpoint_id: string;
  /**
   * Where to consume tasks: `connection_urls` lists every broker node (a cluster; services
   * before it give only `connection_url`).
   */
  task_queue_info: {
    connection_url: string;
    connection_urls?: string[];
    exchange: string;
    queue: string;
  };
  /** Where to publish results and status reports. */
  result_queue_info: {
    connection_url: string;
    connection_urls?: string[];
    exchange: string;
    queue: string;
    queue_publish_kwargs: {
      exchange: string;
      routing_key: string;
      mandatory: boolean;
      properties: { delivery_mode: number };
    };
    /**
     * The service's limit on a result's data, in characters. A result within it may go straight
     * to its task group's streams (with the task's `result_route`); a larger one goes without a
     * route, so that the service fails it with `MaxResultSizeExceeded` before a stream sees it.
     * Absent (an older service): no result goes with a route.
     */
    max_result_bytes?: number;
  };
}

/** The endpoint routes, over the client's transport. */
export class EndpointRoutes {
  readonly #transport: ClientTransport;

  /** Routes over `transport`. */
  constructor(transport: ClientTransport) {
    this.#transport = transport;
  }

  /** `POST v2/endpoints`, always with an id. */
  async registerEndpoint(
    name: string,
    options: RegisterEndpointOptions = {},
  ): Promise<EndpointRegistration> {
    return await this.#transport.request<EndpointRegistration>("post", "v2/endpoints", {
      endpoint_name: name,
      // Always an id, so that a retry after a lost answer registers the same endpoint.
      endpoint_uuid: options.endpointId ?? crypto.randomUUID(),
      metadata: options.metadata ?? {},
    }, options);
  }

  /** `GET v2/endpoints`. */
  async getEndpoints(options: RequestOptions = {}): Promise<
    Array<{ endpoint_id: string; name: string; status: "online" | "offline" }>
  > {
    return await this.#transport.request("get", "v2/endpoints", undefined, options);
  }

  /** `GET v2/endpoints/:id`. */
  async getEndpoint(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<Record<string, unknown>> {
    return await this.#transport.request("get", `v2/endpoints/${endpointId}`, undefined, options);
  }

  /** `POST v2/endpoints/:id/lock`, for `seconds` or the service's default. */
  async lockEndpoint(
    endpointId: string,
    options: RequestOptions & { seconds?: number } = {},
  ): Promise<{ endpoint_id: string; locked_until: number }> {
    return await this.#transport.request("post", `v2/endpoints/${endpointId}/lock`, {
      ...(options.seconds ? { seconds: options.seconds } : {}),
    }, options);
  }

  /** `DELETE v2/endpoints/:id`. */
  async deleteEndpoint(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<Record<string, unknown>> {
    return await this.#transport.request(
      "delete",
      `v2/endpoints/${endpointId}`,
      undefined,
      options,
    );
  }

  /** `GET v2/endpoints/:id/status`. */
  async getEndpointStatus(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<{ status: "online" | "offline"; logs: Record<string, unknown>[] }> {
    return await this.#transport.request(
      "get",
      `v2/endpoints/${endpointId}/status`,
      undefined,
      options,
    );
  }

  /** `GET v2/endpoints/:id/whitelist`: the allowed function ids (empty: all). */
  async getWhitelist(endpointId: string, options: RequestOptions = {}): Promise<string[]> {
    return await this.#whitelist("get", `v2/endpoints/${endpointId}/whitelist`, undefined, options);
  }

  /** `POST v2/endpoints/:id/whitelist`: the allow-list after adding `functionIds`. */
  async addToWhitelist(
    endpointId: string,
    functionIds: readonly string[],
    options: RequestOptions = {},
  ): Promise<string[]> {
    return await this.#whitelist(
      "post",
      `v2/endpoints/${endpointId}/whitelist`,
      { func: functionIds },
      options,
    );
  }

  /** `DELETE v2/endpoints/:id/whitelist/:function`: the allow-list after removing it. */
  async deleteFromWhitelist(
    endpointId: string,
    functionId: string,
    options: RequestOptions = {},
  ): Promise<string[]> {
    return await this.#whitelist(
      "delete",
      `v2/endpoints/${endpointId}/whitelist/${functionId}`,
      undefined,
      options,
    );
  }

  async #whitelist(
    method: "get" | "post" | "delete",
    path: string,
    json: unknown,
    options: RequestOptions,
  ): Promise<string[]> {
    const res = await this.#transport.request<{ functions: string[] }>(method, path, json, options);
    return res.functions;
  }
}
