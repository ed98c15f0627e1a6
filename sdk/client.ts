/**
 * `FuncXClient`: the SDK's REST client of the service. It registers functions, submits tasks and
 * reads their results; it is also what the endpoint uses to register itself. Credentials are API
 * client credentials (`FUNCX_SDK_CLIENT_ID`, `FUNCX_SDK_CLIENT_SECRET`) traded for a bearer token,
 * or a bearer token given directly. The route methods only shape requests and answers: sending,
 * retrying and logging in again is the transport's job (`_http.ts`).
 *
 * The client is composed of one module per resource over one transport, and delegates to them:
 * `_client_transport.ts` (the transport with the token and the version check), `_client_auth.ts`
 * (credentials, `whoami`), `_client_functions.ts`, `_client_containers.ts`, `_client_tasks.ts`,
 * `_client_task_groups.ts` and `_client_endpoints.ts`.
 *
 * @module
 */
import { ClientTransport, type RequestOptions } from "./_client_transport.ts";
import { ClientAuth, whoami } from "./_client_auth.ts";
import {
  type FunctionInfo,
  FunctionRoutes,
  type RegisterFunctionOptions,
} from "./_client_functions.ts";
import { type ContainerInfo, ContainerRoutes } from "./_client_containers.ts";
import {
  type BatchResult,
  type RunOptions,
  type SubmitEntry,
  type SubmitOptions,
  type SubmitResponse,
  type TaskInfo,
  TaskRoutes,
} from "./_client_tasks.ts";
import { type ResultStreamInfo, TaskGroupRoutes } from "./_client_task_groups.ts";
import {
  type EndpointRegistration,
  EndpointRoutes,
  type RegisterEndpointOptions,
} from "./_client_endpoints.ts";
import { Batch, type BatchOptions } from "./batch.ts";
import { resolveEnvironment } from "./environment.ts";
import type { LoginManager } from "./login_manager.ts";
import type { ShellFunction } from "./shell_function.ts";
import { SDK_VERSION } from "./version.ts";

export { SDK_VERSION };
export { isTransientError, type RequestOptions } from "./_client_transport.ts";
export type { FunctionInfo, RegisterFunctionOptions } from "./_client_functions.ts";
export type { ContainerInfo } from "./_client_containers.ts";
export {
  type BatchResult,
  resultValue,
  type RunOptions,
  type SubmitEntry,
  type SubmitOptions,
  type SubmitResponse,
  type TaskInfo,
} from "./_client_tasks.ts";
export type { ResultStreamInfo } from "./_client_task_groups.ts";
export type { EndpointRegistration, RegisterEndpointOptions } from "./_client_endpoints.ts";

/**
 * Options of {@linkcode FuncXClient}.
 *
 * @example A client for a given service, with a token and few retries
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXClient, type FuncXClientOptions } from "@funcx/sdk";
 * const options: FuncXClientOptions = {
 *   serviceAddress: "http://127.0.0.1:8000",
 *   accessToken: "a-token",
 *   retries: 1,
 *   timeoutMs: 5_000,
 * };
 * assert.equal(new FuncXClient(options).serviceAddress, "http://127.0.0.1:8000");
 * ```
 */
export interface FuncXClientOptions {
  /** Base address of the service. @default env `FUNCX_SERVICE_ADDRESS`, else the environment's */
  serviceAddress?: string;
  /** API client id. @default env `FUNCX_SDK_CLIENT_ID` */
  clientId?: string;
  /** API client secret. @default env `FUNCX_SDK_CLIENT_SECRET` */
  clientSecret?: string;
  /** A bearer token to use instead of client credentials. @default env `FUNCX_SDK_ACCESS_TOKEN` */
  accessToken?: string;
  /** Per-request timeout in milliseconds. @default 30000 */
  timeoutMs?: number;
  /** Environment name, when no address is given. @default env `FUNCX_SDK_ENVIRONMENT`, else "local" */
  environment?: string;
  /** Stored logins to use when there are no client credentials. @default one for the environment */
  loginManager?: LoginManager;
  /** Check the service's minimum SDK version on the first request. @default true */
  checkVersion?: boolean;
  /**
   * How many times a request is sent again after a network error, a timeout, a 429 or a
   * 502/503/504 (with jittered exponential backoff, 0.25 s doubling up to 8 s, or as long as
   * `Retry-After` says, at most 30 s). A POST carries an `Idempotency-Key` that stays the same
   * across its attempts, so the service does it once.
   * @default 4
   */
  retries?: number;
}

/**
 * REST client of the funcX service: every route, one call each. Requests that fail on the way
 * are sent again (see {@linkcode FuncXClientOptions.retries}); every call takes a `signal`.
 *
 * @example Run a function and wait for its result (when `FUNCX_ENDPOINT_ID` names an endpoint)
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXClient, TaskPending } from "@funcx/sdk";
 *
 * const endpointId = Deno.env.get("FUNCX_ENDPOINT_ID");
 * if (endpointId) {
 *   const fx = new FuncXClient(); // FUNCX_SERVICE_ADDRESS, FUNCX_SDK_CLIENT_ID/SECRET
 *   const fnId = await fx.registerFunction((a: number, b: number) => a + b);
 *   const taskId = await fx.run(fnId, endpointId, { args: [1, 2] });
 *   let result: unknown;
 *   for (;;) {
 *     try {
 *       result = await fx.getResult(taskId, { signal: AbortSignal.timeout(60_000) });
 *       break;
 *     } catch (e) {
 *       if (!(e instanceof TaskPending)) throw e;
 *       await new Promise((r) => setTimeout(r, 200));
 *     }
 *   }
 *   assert.equal(result, 3);
 * }
 * ```
 *
 * @example Options without a service: nothing is sent until a call
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncXClient } from "@funcx/sdk";
 * const fx = new FuncXClient({ serviceAddress: "http://127.0.0.1:9/", accessToken: "t" });
 * assert.equal(fx.serviceAddress, "http://127.0.0.1:9");
 * assert.match(fx.sessionTaskGroupId, /^[0-9a-f-]{36}$/);
 * ```
 */
export class FuncXClient {
  /** Base address of the service. */
  readonly serviceAddress: string;
  /** The task group `run` submits into unless told otherwise. */
  readonly sessionTaskGroupId: string = crypto.randomUUID();
  readonly #transport: ClientTransport;
  readonly #functions: FunctionRoutes;
  readonly #containers: ContainerRoutes;
  readonly #tasks: TaskRoutes;
  readonly #taskGroups: TaskGroupRoutes;
  readonly #endpoints: EndpointRoutes;

  /** Builds a client; options fall back to the `FUNCX_*` environment variables. */
  constructor(options: FuncXClientOptions = {}) {
    const env = resolveEnvironment({
      ...(options.serviceAddress ? { serviceAddress: options.serviceAddress } : {}),
      ...(options.environment ? { environment: options.environment } : {}),
    });
    this.serviceAddress = env.serviceAddress;
    const retries = options.retries ?? 4;
    if (!Number.isInteger(retries) || retries < 0) {
      throw new RangeError(`Invalid retries ${retries}: expected a whole number >= 0`);
    }
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (!(timeoutMs > 0)) {
      throw new RangeError(`Invalid timeoutMs ${timeoutMs}: expected a number > 0`);
    }
    const auth = new ClientAuth({
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      accessToken: options.accessToken,
      loginManager: options.loginManager,
      serviceAddress: env.serviceAddress,
      environment: env.environment,
    }, (req) => this.#transport.send(req));
    this.#transport = new ClientTransport({
      serviceAddress: this.serviceAddress,
      timeoutMs,
      retries,
      checkVersion: options.checkVersion ?? true,
      auth,
    });
    this.#functions = new FunctionRoutes(this.#transport);
    this.#containers = new ContainerRoutes(this.#transport);
    this.#tasks = new TaskRoutes(this.#transport, this.sessionTaskGroupId);
    this.#taskGroups = new TaskGroupRoutes(this.#transport);
    this.#endpoints = new EndpointRoutes(this.#transport);
  }

  /**
   * Checks that this SDK is at least the service's minimum SDK version; throws a
   * {@linkcode FuncxAPIError} (`sdk_outdated`) naming both versions otherwise.
   */
  async checkVersion(options: RequestOptions = {}): Promise<void> {
    return await this.#transport.checkVersion(options);
  }

  /** The service's version info. */
  async version(options: RequestOptions = {}): Promise<Record<string, unknown>> {
    return await this.#transport.version(options);
  }

  /** Registers a function (sent as its source text) and returns its id. */
  async registerFunction(
    fn: (...args: never[]) => unknown,
    options: RegisterFunctionOptions = {},
  ): Promise<string> {
    return await this.#functions.registerFunction(fn, options);
  }

  /** Registers a {@linkcode ShellFunction}; run it with `kwargs` for its `{name}` placeholders. */
  async registerShellFunction(
    shell: ShellFunction,
    options: Omit<RegisterFunctionOptions, "name"> = {},
  ): Promise<string> {
    return await this.#functions.registerShellFunction(shell, options);
  }

  /**
   * Registers a container image that functions can run in: `location` is what the endpoint's
   * container runtime of `type` starts (an image name for `docker`/`podman`, a `.sif` file for
   * `apptainer`/`singularity`). The image must have `funcx-endpoint` on its `PATH`. Returns the
   * container's id, for `registerFunction`'s `containerId` or the executor's.
   */
  async registerContainer(
    location: string,
    type: string,
    options: RequestOptions & { name?: string; description?: string } = {},
  ): Promise<string> {
    return await this.#containers.registerContainer(location, type, options);
  }

  /** A registered container, by id and type. */
  async getContainer(
    containerId: string,
    type: string,
    options: RequestOptions = {},
  ): Promise<ContainerInfo> {
    return await this.#containers.getContainer(containerId, type, options);
  }

  /** Who the service says this client is. */
  async whoami(
    options: RequestOptions = {},
  ): Promise<{ id: string; username: string; client_id: string | null }> {
    return await whoami(this.#transport, options);
  }

  /**
   * Submits tasks in one request. With `createQueue` the service also forwards the group's
   * results to its result streams (see {@linkcode FuncXClient.openResultStream}). Sending the
   * same request again with the same `idempotencyKey` (after an answer was lost) adds no task
   * twice: the service answers with the same task ids.
   */
  async submit(
    tasks: readonly SubmitEntry[],
    taskGroupId?: string,
    options: SubmitOptions = {},
  ): Promise<SubmitResponse> {
    return await this.#tasks.submit(tasks, taskGroupId, options);
  }

  /**
   * Makes a result queue of its own for this process on a task group (created if new) and
   * returns it with the user's broker login: every result of the group's tasks stored from now
   * on is put on it. Each caller gets its own queue, so several processes watching one group
   * each get every result.
   */
  async openResultStream(
    taskGroupId: string,
    options: RequestOptions = {},
  ): Promise<ResultStreamInfo> {
    return await this.#taskGroups.openResultStream(taskGroupId, options);
  }

  /**
   * Registers a function given as source text (JavaScript that evaluates to a function); the
   * way to register code built at run time without `eval` here.
   */
  async registerFunctionSource(
    name: string,
    source: string,
    options: Omit<RegisterFunctionOptions, "name"> = {},
  ): Promise<string> {
    return await this.#functions.registerFunctionSource(name, source, options);
  }

  /** The user's registered functions, newest first (`limit`: how many, 1 to 1000, default 100). */
  async getFunctions(options: RequestOptions & { limit?: number } = {}): Promise<FunctionInfo[]> {
    return await this.#functions.getFunctions(options);
  }

  /** Runs a registered function on an endpoint; returns the task id. */
  async run(functionId: string, endpointId: string, options: RunOptions = {}): Promise<string> {
    return await this.#tasks.run(functionId, endpointId, options);
  }

  /**
   * Cancels a task: it fails with `TaskCancelled`, a queued one never runs and a running one is
   * stopped on the endpoint. Returns whether it was cancelled (false once it had finished).
   */
  async cancelTask(taskId: string, options: RequestOptions = {}): Promise<boolean> {
    return await this.#tasks.cancelTask(taskId, options);
  }

  /** A task's state; `result`/`exception` are still serialized. */
  async getTask(taskId: string, options: RequestOptions = {}): Promise<TaskInfo> {
    return await this.#tasks.getTask(taskId, options);
  }

  /**
   * A task's result. Throws {@linkcode TaskPending} while it runs and
   * {@linkcode TaskExecutionFailed} (with the remote error's name, message and stack) if it failed.
   */
  async getResult(taskId: string, options: RequestOptions = {}): Promise<unknown> {
    return await this.#tasks.getResult(taskId, options);
  }

  /** A new {@linkcode Batch} for this client's session task group (unless told otherwise). */
  createBatch(options: BatchOptions = {}): Batch {
    return new Batch({ taskGroupId: this.sessionTaskGroupId, ...options });
  }

  /**
   * Submits a batch in one request; returns the task ids in order. Throws a
   * {@linkcode FuncxAPIError} naming the first refused task if any was refused (the others were
   * still submitted: their ids are in `errorArgs[1]`).
   */
  async batchRun(batch: Batch, options: RequestOptions = {}): Promise<string[]> {
    return await this.#tasks.batchRun(batch, options);
  }

  /**
   * Results of many tasks (1,024 per request). Every id gets an entry: finished ones with their
   * result or error, pending ones with their state, unknown ones with a `task_not_found` error.
   */
  async getBatchResult(
    taskIds: readonly string[],
    options: RequestOptions = {},
  ): Promise<Map<string, BatchResult>> {
    return await this.#tasks.getBatchResult(taskIds, options);
  }

  /** The ids of a task group's tasks (to reattach to it from another process). */
  async getTaskGroup(taskGroupId: string, options: RequestOptions = {}): Promise<string[]> {
    return await this.#taskGroups.getTaskGroup(taskGroupId, options);
  }

  /**
   * Where this user's result stream is: an AMQP URL with a login of its own (and the same for
   * every node of a broker cluster, `connection_urls`), and the queue prefix.
   */
  async getResultAmqpUrl(
    options: RequestOptions = {},
  ): Promise<{ connection_url: string; connection_urls?: string[]; queue_prefix: string }> {
    return await this.#taskGroups.getResultAmqpUrl(options);
  }

  /** Functions an endpoint allows (empty: all). */
  async getWhitelist(endpointId: string, options: RequestOptions = {}): Promise<string[]> {
    return await this.#endpoints.getWhitelist(endpointId, options);
  }

  /** Allows functions on an endpoint; returns the allow-list. */
  async addToWhitelist(
    endpointId: string,
    functionIds: readonly string[],
    options: RequestOptions = {},
  ): Promise<string[]> {
    return await this.#endpoints.addToWhitelist(endpointId, functionIds, options);
  }

  /** Removes a function from an endpoint's allow-list; returns the allow-list. */
  async deleteFromWhitelist(
    endpointId: string,
    functionId: string,
    options: RequestOptions = {},
  ): Promise<string[]> {
    return await this.#endpoints.deleteFromWhitelist(endpointId, functionId, options);
  }

  /** Registers (or re-registers) an endpoint; used by the endpoint daemon. */
  async registerEndpoint(
    name: string,
    options: RegisterEndpointOptions = {},
  ): Promise<EndpointRegistration> {
    return await this.#endpoints.registerEndpoint(name, options);
  }

  /** The user's endpoints. */
  async getEndpoints(options: RequestOptions = {}): Promise<
    Array<{ endpoint_id: string; name: string; status: "online" | "offline" }>
  > {
    return await this.#endpoints.getEndpoints(options);
  }

  /** An endpoint's record (name, metadata, registration times). */
  async getEndpoint(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<Record<string, unknown>> {
    return await this.#endpoints.getEndpoint(endpointId, options);
  }

  /**
   * Locks an endpoint for `seconds` (`stop --remote`): every process running it is told to shut
   * down, and registrations with its id are refused (423) until the lock expires.
   */
  async lockEndpoint(
    endpointId: string,
    options: RequestOptions & { seconds?: number } = {},
  ): Promise<{ endpoint_id: string; locked_until: number }> {
    return await this.#endpoints.lockEndpoint(endpointId, options);
  }

  /** Stops an endpoint everywhere it runs (funcX's `stop_endpoint`): a lock of 60 s. */
  async stopEndpoint(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<{ endpoint_id: string; locked_until: number }> {
    return await this.lockEndpoint(endpointId, options.signal ? { signal: options.signal } : {});
  }

  /** Deletes an endpoint at the service; its id can not be registered again. */
  async deleteEndpoint(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<Record<string, unknown>> {
    return await this.#endpoints.deleteEndpoint(endpointId, options);
  }

  /** An endpoint's status: `online` while its heartbeats arrive. */
  async getEndpointStatus(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<{ status: "online" | "offline"; logs: Record<string, unknown>[] }> {
    return await this.#endpoints.getEndpointStatus(endpointId, options);
  }
}
