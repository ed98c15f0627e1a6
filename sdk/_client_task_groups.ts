/**
 * The task group routes of `FuncXClient`: a process's result stream of a group, the ids of a
 * group's tasks (to reattach to it), and the user's result connection. The executor and its
 * result hub use them; the stream itself is consumed by `result_watcher.ts`.
 *
 * @module
 */
import type { ClientTransport, RequestOptions } from "./_client_transport.ts";

/**
 * A result queue of one process on a task group, from {@linkcode FuncXClient.openResultStream}.
 *
 * @example Where a process's results wait
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ResultStreamInfo } from "@funcx/sdk";
 * const stream: ResultStreamInfo = {
 *   task_group_id: "3f0c1a9e-7d2b-4c55-9e61-0a8f4b2c1d3e",
 *   connection_url: "amqp://user:secret@127.0.0.1:5672/",
 *   queue: "results.3f0c1a9e.1",
 * };
 * assert.ok(stream.connection_url.startsWith("amqp://"));
 * ```
 */
export interface ResultStreamInfo {
  /** The task group. */
  task_group_id: string;
  /** AMQP URL with the user's broker login. */
  connection_url: string;
  /**
   * The same for every node of the broker cluster, the first being `connection_url` (services
   * before clusters give only `connection_url`).
   */
  connection_urls?: string[];
  /** The queue to consume. */
  queue: string;
}

/** The task group routes, over the client's transport. */
export class TaskGroupRoutes {
  readonly #transport: ClientTransport;

  /** Routes over `transport`. */
  constructor(transport: ClientTransport) {
    this.#transport = transport;
  }

  /** `POST v2/result_streams`: a result queue of this process's own on the group. */
  async openResultStream(
    taskGroupId: string,
    options: RequestOptions = {},
  ): Promise<ResultStreamInfo> {
    return await this.#transport.request<ResultStreamInfo>("post", "v2/result_streams", {
      task_group_id: taskGroupId,
    }, options);
  }

  /** `GET v2/taskgroup/:id`: the ids of the group's tasks. */
  async getTaskGroup(taskGroupId: string, options: RequestOptions = {}): Promise<string[]> {
    const res = await this.#transport.request<{ tasks: Array<{ id: string }> }>(
      "get",
      `v2/taskgroup/${taskGroupId}`,
      undefined,
      options,
    );
    return res.tasks.map((t) => t.id);
  }

  /** `GET v2/get_amqp_result_connection_url`: the user's result connection and queue prefix. */
  async getResultAmqpUrl(
    options: RequestOptions = {},
  ): Promise<{ connection_url: string; connection_urls?: string[]; queue_prefix: string }> {
    return await this.#transport.request(
      "get",
      "v2/get_amqp_result_connection_url",
      undefined,
      options,
    );
  }
}
