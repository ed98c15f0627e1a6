/**
 * `FuncXClient`: the SDK's REST client of the service. It registers functions, submits tasks and
 * reads their results; it is also what the endpoint uses to register itself. Credentials are API
 * client credentials (`FUNCX_SDK_CLIENT_ID`, `FUNCX_SDK_CLIENT_SECRET`) traded for a bearer token,
 * or a bearer token given directly. The route methods only shape requests and answers: sending,
 * retrying and logging in again is the transport's job (`_http.ts`).
 *
 * @module
 */
import process from "node:process";
import { getLogger } from "@logtape/logtape";
import { HttpTransport, RETRY_STATUSES } from "./_http.ts";
import { Batch, type BatchOptions } from "./batch.ts";
import { resolveEnvironment } from "./environment.ts";
import { LoginManager } from "./login_manager.ts";
import { SHELL_FUNCTION_NAME, type ShellFunction } from "./shell_function.ts";
import {
  FuncxAPIError,
  remoteErrorOf,
  TaskExecutionFailed,
  taskFailure,
  TaskPending,
} from "./errors.ts";
import {
  DeserializationError,
  deserializeData,
  isTerminalState,
  packArgs,
  packBuffers,
  serialize,
  SerializerMethod,
} from "./protocol/mod.ts";
import { compareVersions, SDK_VERSION } from "./version.ts";

export { SDK_VERSION };

const log = getLogger(["funcx", "sdk", "client"]);

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
 * What every {@linkcode FuncXClient} call accepts.
 *
 * @example Give up on a call after 10 s
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RequestOptions } from "@funcx/sdk";
 * const options: RequestOptions = { signal: AbortSignal.timeout(10_000) };
 * assert.equal(options.signal?.aborted, false);
 * ```
 */
export interface RequestOptions {
  /**
   * Aborts the call, its retries and their waits; the call rejects with the signal's reason.
   * @default none
   */
  signal?: AbortSignal;
}

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
  /** The queue to consume. */
  queue: string;
}

/**
 * Whether an error from a {@linkcode FuncXClient} call means the service could not be reached or
 * could not answer now (network error, 502/503/504, 429, a repeat still in progress), so the same
 * call may succeed later, as opposed to a refusal. The executor waits out such errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncxAPIError, isTransientError } from "@funcx/sdk";
 * assert.ok(isTransientError(new FuncxAPIError(0, "network_error", "down")));
 * assert.ok(isTransientError(new FuncxAPIError(503, "http_503", "busy")));
 * assert.ok(!isTransientError(new FuncxAPIError(404, "task_not_found", "gone")));
 * assert.ok(!isTransientError(new Error("not an API error")));
 * ```
 */
export function isTransientError(err: unknown): boolean {
  if (!(err instanceof FuncxAPIError)) return false;
  return err.codeName === "network_error" || err.codeName === "idempotency_key_in_progress" ||
    err.httpStatus === 429 || RETRY_STATUSES.has(err.httpStatus);
}

/**
 * Options of {@linkcode FuncXClient.registerFunction}.
 *
 * @example A public function with a name of its own
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RegisterFunctionOptions } from "@funcx/sdk";
 * const options: RegisterFunctionOptions = { name: "double", description: "n * 2", public: true };
 * assert.equal(options.public, true);
 * ```
 */
export interface RegisterFunctionOptions extends RequestOptions {
  /** Name to register under. @default the function's own name */
  name?: string;
  /** Free-text description. @default "" */
  description?: string;
  /** Whether other users may run it. @default false */
  public?: boolean;
  /** Container it runs in (from {@linkcode FuncXClient.registerContainer}). @default none */
  containerId?: string;
}

/**
 * A container image registered with {@linkcode FuncXClient.registerContainer}.
 *
 * @example A registered image
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ContainerInfo } from "@funcx/sdk";
 * const info: ContainerInfo = {
 *   container_id: crypto.randomUUID(),
 *   name: "numpy",
 *   description: "",
 *   container_type: "apptainer",
 *   location: "/images/numpy.sif",
 * };
 * assert.equal(info.container_type, "apptainer");
 * ```
 */
export interface ContainerInfo {
  /** The container's id. */
  container_id: string;
  /** Its name. */
  name: string;
  /** Free-text description. */
  description: string;
  /** The runtime the image is for: `docker`, `podman`, `apptainer`, `singularity` or `custom`. */
  container_type: string;
  /** Where the runtime finds the image (a registry name, a `.sif` path, ...). */
  location: string;
}

/**
 * Options of {@linkcode FuncXClient.run}.
 *
 * @example Arguments, keyword arguments and a task group
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RunOptions } from "@funcx/sdk";
 * const options: RunOptions = {
 *   args: [21],
 *   kwargs: { scale: 2 },
 *   taskGroupId: crypto.randomUUID(),
 * };
 * assert.deepEqual(options.args, [21]);
 * ```
 */
export interface RunOptions extends RequestOptions {
  /** Positional arguments. @default [] */
  args?: readonly unknown[];
  /** Keyword arguments, passed to the function as a last argument when not empty. @default {} */
  kwargs?: Record<string, unknown>;
  /** Task group to submit into. @default the client's session task group */
  taskGroupId?: string;
  /** Values for a multi-user endpoint's user endpoint template. @default none */
  userEndpointConfig?: Record<string, unknown>;
}

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
  /** Where to consume tasks. */
  task_queue_info: { connection_url: string; exchange: string; queue: string };
  /** Where to publish results and status reports. */
  result_queue_info: {
    connection_url: string;
    exchange: string;
    queue: string;
    queue_publish_kwargs: {
      exchange: string;
      routing_key: string;
      mandatory: boolean;
      properties: { delivery_mode: number };
    };
  };
}

/**
 * A task's state as the service reports it.
 *
 * @example Read a task's state
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TaskInfo } from "@funcx/sdk";
 * function describe(t: TaskInfo): string {
 *   return t.pending ? `still ${t.status}` : `finished: ${t.status}`;
 * }
 * assert.equal(describe({ task_id: "t1", status: "running", pending: true }), "still running");
 * ```
 */
export interface TaskInfo {
  /** The task id. */
  task_id: string;
  /** The task's state, for example `"running"` or `"success"`. */
  status: string;
  /** Whether the task has not finished. */
  pending: boolean;
  /** The serialized result, once successful. */
  result?: string;
  /** The serialized remote error, once failed. */
  exception?: string;
  /** The error code of a failed task, for example `"RemoteExecutionError"`. */
  error_code?: string;
  /** When the task completed, in seconds since the epoch. */
  completion_t?: number;
}

/**
 * One task of a submit batch: `[function_id, endpoint_id, payload]`.
 *
 * @example One task of a submit request
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SubmitEntry } from "@funcx/sdk";
 * import { packArgs } from "@funcx/sdk/protocol";
 * const entry: SubmitEntry = [crypto.randomUUID(), crypto.randomUUID(), packArgs([1, 2])];
 * assert.equal(entry.length, 3);
 * ```
 */
export type SubmitEntry = [string, string, string];

/**
 * The service's answer to a submit.
 *
 * @example Task ids, or why a task was refused
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SubmitResponse } from "@funcx/sdk";
 * function taskIds(res: SubmitResponse): Array<string | null> {
 *   return res.results.map((r) => (r.status === "Success" ? r.task_uuid : null));
 * }
 * const res: SubmitResponse = {
 *   response: "batch",
 *   task_group_id: "g1",
 *   results: [
 *     { status: "Success", task_uuid: "t1", http_status_code: 200 },
 *     {
 *       code: "function_not_found",
 *       reason: "Function f2 was not found",
 *       http_status_code: 404,
 *       error_args: ["f2"],
 *       task_uuid: null,
 *     },
 *   ],
 * };
 * assert.deepEqual(taskIds(res), ["t1", null]);
 * ```
 */
export interface SubmitResponse {
  /** Always `"batch"`. */
  response: "batch";
  /** The task group the tasks went into. */
  task_group_id: string;
  /** One entry per submitted task, in order: its id, or the error that refused it. */
  results: Array<
    { status: "Success"; task_uuid: string; http_status_code: number } | {
      status?: undefined;
      code: string;
      reason: string;
      http_status_code: number;
      error_args: unknown[];
      task_uuid: string | null;
    }
  >;
}

interface CachedToken {
  token: string;
  expiresAt: number;
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
  readonly #clientId: string | undefined;
  readonly #clientSecret: string | undefined;
  readonly #http: HttpTransport;
  readonly #loginManager: LoginManager | undefined;
  readonly #checkVersion: boolean;
  #versionChecked: Promise<void> | undefined;
  #token: CachedToken | undefined;
  #tokenRequest: Promise<string> | undefined;

  /** Builds a client; options fall back to the `FUNCX_*` environment variables. */
  constructor(options: FuncXClientOptions = {}) {
    const env = resolveEnvironment({
      ...(options.serviceAddress ? { serviceAddress: options.serviceAddress } : {}),
      ...(options.environment ? { environment: options.environment } : {}),
    });
    this.serviceAddress = env.serviceAddress;
    this.#checkVersion = options.checkVersion ?? true;
    const retries = options.retries ?? 4;
    if (!Number.isInteger(retries) || retries < 0) {
      throw new RangeError(`Invalid retries ${retries}: expected a whole number >= 0`);
    }
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (!(timeoutMs > 0)) {
      throw new RangeError(`Invalid timeoutMs ${timeoutMs}: expected a number > 0`);
    }
    this.#clientId = options.clientId ?? process.env.FUNCX_SDK_CLIENT_ID;
    this.#clientSecret = options.clientSecret ?? process.env.FUNCX_SDK_CLIENT_SECRET;
    const token = options.accessToken ?? process.env.FUNCX_SDK_ACCESS_TOKEN;
    if (token) this.#token = { token, expiresAt: Infinity };
    this.#loginManager = options.loginManager ??
      (token || (this.#clientId && this.#clientSecret)
        ? undefined
        : new LoginManager({ serviceAddress: env.serviceAddress, environment: env.environment }));
    this.#http = new HttpTransport({
      serviceAddress: this.serviceAddress,
      timeoutMs,
      retries,
      auth: {
        token: () => this.#accessToken(),
        // Only client credentials can log in again by themselves.
        invalidate: () => {
          if (!this.#clientId || !this.#clientSecret) return false;
          this.#token = undefined;
          return true;
        },
      },
    });
  }

  async #accessToken(): Promise<string> {
    if (this.#token && this.#token.expiresAt > Date.now()) return this.#token.token;
    this.#tokenRequest ??= this.#login().finally(() => (this.#tokenRequest = undefined));
    return await this.#tokenRequest;
  }

  async #login(): Promise<string> {
    if (!this.#clientId || !this.#clientSecret) {
      const stored = await this.#loginManager?.accessToken();
      if (stored) return stored;
      throw new FuncxAPIError(
        401,
        "unauthorized",
        "Not logged in: set FUNCX_SDK_CLIENT_ID and FUNCX_SDK_CLIENT_SECRET (create them with " +
          "`funcx-service client create`), or log in with `new LoginManager().login()`",
      );
    }
    // Asking for a token twice does no harm, so it is retried like a GET, with no key.
    const t = await this.#http.request<{ access_token: string; expires_in: number }>({
      method: "post",
      path: "v2/oauth/token",
      form: {
        grant_type: "client_credentials",
        client_id: this.#clientId,
        client_secret: this.#clientSecret,
      },
      idempotencyKey: false,
      auth: false,
      doing: "Cannot log in with client credentials",
    });
    // Renew a minute early so a request never carries a token that expires in flight.
    this.#token = { token: t.access_token, expiresAt: Date.now() + (t.expires_in - 60) * 1000 };
    log.debug("Logged in as client {id}", { id: this.#clientId });
    return t.access_token;
  }

  /** Sends an authenticated request through the transport, after the version check. */
  async #request<T>(
    method: "get" | "post" | "delete",
    path: string,
    json?: unknown,
    options: RequestOptions & { idempotencyKey?: string } = {},
  ): Promise<T> {
    if (this.#checkVersion) {
      this.#versionChecked ??= this.checkVersion().catch((err) => {
        this.#versionChecked = undefined; // an unreachable service is asked again next time
        throw err;
      });
      await abortable(this.#versionChecked, options.signal);
    }
    return await this.#http.request<T>({
      method,
      path,
      ...(json === undefined ? {} : { json }),
      ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}),
      signal: options.signal,
    });
  }

  /**
   * Checks that this SDK is at least the service's minimum SDK version; throws a
   * {@linkcode FuncxAPIError} (`sdk_outdated`) naming both versions otherwise.
   */
  async checkVersion(options: RequestOptions = {}): Promise<void> {
    const v = await this.version(options);
    const min = String(v["min_sdk_version"] ?? "0.0.0");
    if (compareVersions(SDK_VERSION, min) < 0) {
      throw new FuncxAPIError(
        426,
        "sdk_outdated",
        `This SDK is version ${SDK_VERSION} but the service at ${this.serviceAddress} needs ` +
          `${min} or newer: upgrade @funcx/sdk`,
        [SDK_VERSION, min],
      );
    }
  }

  /** The service's version info. */
  async version(options: RequestOptions = {}): Promise<Record<string, unknown>> {
    return await this.#http.request<Record<string, unknown>>({
      method: "get",
      path: "v2/version",
      searchParams: { service: "all" },
      auth: false,
      doing: "Cannot read the service version",
      signal: options.signal,
    });
  }

  /** Registers a function (sent as its source text) and returns its id. */
  async registerFunction(
    fn: (...args: never[]) => unknown,
    options: RegisterFunctionOptions = {},
  ): Promise<string> {
    if (typeof fn !== "function") {
      throw new TypeError(`Cannot register ${typeof fn}: expected a function`);
    }
    const body = await this.#request<{ function_uuid: string }>("post", "v2/functions", {
      function_name: options.name ?? fn.name ?? "",
      function_code: packBuffers([serialize(fn)]),
      description: options.description ?? "",
      public: options.public ?? false,
      container_uuid: options.containerId ?? null,
    }, options);
    return body.function_uuid;
  }

  /** Registers a {@linkcode ShellFunction}; run it with `kwargs` for its `{name}` placeholders. */
  async registerShellFunction(
    shell: ShellFunction,
    options: Omit<RegisterFunctionOptions, "name"> = {},
  ): Promise<string> {
    return await this.registerFunctionSource(SHELL_FUNCTION_NAME, shell.source(), options);
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
    const body = await this.#request<{ container_id: string }>("post", "v2/containers", {
      name: options.name ?? "",
      location,
      description: options.description ?? "",
      type,
    }, options);
    return body.container_id;
  }

  /** A registered container, by id and type. */
  async getContainer(
    containerId: string,
    type: string,
    options: RequestOptions = {},
  ): Promise<ContainerInfo> {
    const body = await this.#request<{ container: ContainerInfo }>(
      "get",
      `v2/containers/${encodeURIComponent(containerId)}/${encodeURIComponent(type)}`,
      undefined,
      options,
    );
    return body.container;
  }

  /** Who the service says this client is. */
  async whoami(
    options: RequestOptions = {},
  ): Promise<{ id: string; username: string; client_id: string | null }> {
    return await this.#request("get", "v2/whoami", undefined, options);
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
    options: RequestOptions & {
      createQueue?: boolean;
      idempotencyKey?: string;
      userEndpointConfig?: Record<string, unknown>;
    } = {},
  ): Promise<SubmitResponse> {
    return await this.#request<SubmitResponse>("post", "v2/submit", {
      task_group_id: taskGroupId ?? this.sessionTaskGroupId,
      create_websocket_queue: options.createQueue ?? false,
      tasks,
      ...(options.userEndpointConfig ? { user_endpoint_config: options.userEndpointConfig } : {}),
    }, options);
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
    return await this.#request<ResultStreamInfo>("post", "v2/result_streams", {
      task_group_id: taskGroupId,
    }, options);
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
    const body = await this.#request<{ function_uuid: string }>("post", "v2/functions", {
      function_name: name,
      function_code: packBuffers([`${SerializerMethod.SOURCE}\n${name}:${source}`]),
      description: options.description ?? "",
      public: options.public ?? false,
      container_uuid: options.containerId ?? null,
    }, options);
    return body.function_uuid;
  }

  /** Runs a registered function on an endpoint; returns the task id. */
  async run(functionId: string, endpointId: string, options: RunOptions = {}): Promise<string> {
    const payload = packArgs(options.args ?? [], options.kwargs ?? {});
    const res = await this.submit([[functionId, endpointId, payload]], options.taskGroupId, {
      ...(options.userEndpointConfig ? { userEndpointConfig: options.userEndpointConfig } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const r = res.results[0];
    if (!r) {
      throw new FuncxAPIError(500, "internal_error", "Service answered a submit with no result");
    }
    if (r.status !== "Success") {
      throw new FuncxAPIError(r.http_status_code, r.code, r.reason, r.error_args);
    }
    return r.task_uuid;
  }

  /**
   * Cancels a task: it fails with `TaskCancelled`, a queued one never runs and a running one is
   * stopped on the endpoint. Returns whether it was cancelled (false once it had finished).
   */
  async cancelTask(taskId: string, options: RequestOptions = {}): Promise<boolean> {
    const res = await this.#request<{ cancelled: boolean }>(
      "post",
      `v2/tasks/${taskId}/cancel`,
      {},
      options,
    );
    return res.cancelled;
  }

  /** A task's state; `result`/`exception` are still serialized. */
  async getTask(taskId: string, options: RequestOptions = {}): Promise<TaskInfo> {
    const t = await this.#request<Omit<TaskInfo, "pending">>(
      "get",
      `v2/tasks/${taskId}`,
      undefined,
      options,
    );
    return { ...t, pending: !isTerminalState(t.status) };
  }

  /**
   * A task's result. Throws {@linkcode TaskPending} while it runs and
   * {@linkcode TaskExecutionFailed} (with the remote error's name, message and stack) if it failed.
   */
  async getResult(taskId: string, options: RequestOptions = {}): Promise<unknown> {
    const t = await this.getTask(taskId, options);
    if (t.pending) throw new TaskPending(taskId, t.status);
    if (t.status === "success") return resultValue(taskId, t.result ?? "");
    throw taskFailure(
      taskId,
      t.error_code ?? "RemoteExecutionError",
      remoteErrorOf(t.exception),
      t.completion_t,
    );
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
    const res = await this.#request<SubmitResponse>("post", "v2/submit", {
      task_group_id: batch.taskGroupId ?? this.sessionTaskGroupId,
      create_websocket_queue: batch.createQueue,
      tasks: batch.tasks(),
      ...(batch.userEndpointConfig ? { user_endpoint_config: batch.userEndpointConfig } : {}),
    }, options);
    const ids = res.results.map((r) => (r.status === "Success" ? r.task_uuid : null));
    const bad = res.results.findIndex((r) => r.status !== "Success");
    if (bad >= 0) {
      const r = res.results[bad]!;
      if (r.status !== "Success") {
        throw new FuncxAPIError(
          r.http_status_code,
          r.code,
          `Task ${bad} of the batch was refused: ${r.reason}`,
          [bad, ids],
        );
      }
    }
    return ids as string[];
  }

  /**
   * Results of many tasks (1,024 per request). Every id gets an entry: finished ones with their
   * result or error, pending ones with their state, unknown ones with a `task_not_found` error.
   */
  async getBatchResult(
    taskIds: readonly string[],
    options: RequestOptions = {},
  ): Promise<Map<string, BatchResult>> {
    const out = new Map<string, BatchResult>();
    for (let i = 0; i < taskIds.length; i += 1024) {
      const chunk = taskIds.slice(i, i + 1024);
      const res = await this.#request<{ results: Record<string, Record<string, unknown>> }>(
        "post",
        "v2/batch_status",
        { task_ids: chunk },
        options,
      );
      for (const id of chunk) {
        const t = res.results[id];
        out.set(id, batchEntry(id, t));
      }
    }
    return out;
  }

  /** The ids of a task group's tasks (to reattach to it from another process). */
  async getTaskGroup(taskGroupId: string, options: RequestOptions = {}): Promise<string[]> {
    const res = await this.#request<{ tasks: Array<{ id: string }> }>(
      "get",
      `v2/taskgroup/${taskGroupId}`,
      undefined,
      options,
    );
    return res.tasks.map((t) => t.id);
  }

  /** Where this user's result stream is: an AMQP URL with a login of its own, and the prefix. */
  async getResultAmqpUrl(
    options: RequestOptions = {},
  ): Promise<{ connection_url: string; queue_prefix: string }> {
    return await this.#request("get", "v2/get_amqp_result_connection_url", undefined, options);
  }

  /** Functions an endpoint allows (empty: all). */
  async getWhitelist(endpointId: string, options: RequestOptions = {}): Promise<string[]> {
    const res = await this.#request<{ functions: string[] }>(
      "get",
      `v2/endpoints/${endpointId}/whitelist`,
      undefined,
      options,
    );
    return res.functions;
  }

  /** Allows functions on an endpoint; returns the allow-list. */
  async addToWhitelist(
    endpointId: string,
    functionIds: readonly string[],
    options: RequestOptions = {},
  ): Promise<string[]> {
    const res = await this.#request<{ functions: string[] }>(
      "post",
      `v2/endpoints/${endpointId}/whitelist`,
      { func: functionIds },
      options,
    );
    return res.functions;
  }

  /** Removes a function from an endpoint's allow-list; returns the allow-list. */
  async deleteFromWhitelist(
    endpointId: string,
    functionId: string,
    options: RequestOptions = {},
  ): Promise<string[]> {
    const res = await this.#request<{ functions: string[] }>(
      "delete",
      `v2/endpoints/${endpointId}/whitelist/${functionId}`,
      undefined,
      options,
    );
    return res.functions;
  }

  /** Registers (or re-registers) an endpoint; used by the endpoint daemon. */
  async registerEndpoint(
    name: string,
    options: RegisterEndpointOptions = {},
  ): Promise<EndpointRegistration> {
    return await this.#request<EndpointRegistration>("post", "v2/endpoints", {
      endpoint_name: name,
      // Always an id, so that a retry after a lost answer registers the same endpoint.
      endpoint_uuid: options.endpointId ?? crypto.randomUUID(),
      metadata: options.metadata ?? {},
    }, options);
  }

  /** The user's endpoints. */
  async getEndpoints(options: RequestOptions = {}): Promise<
    Array<{ endpoint_id: string; name: string; status: "online" | "offline" }>
  > {
    return await this.#request("get", "v2/endpoints", undefined, options);
  }

  /** An endpoint's record (name, metadata, registration times). */
  async getEndpoint(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<Record<string, unknown>> {
    return await this.#request("get", `v2/endpoints/${endpointId}`, undefined, options);
  }

  /**
   * Locks an endpoint for `seconds` (`stop --remote`): every process running it is told to shut
   * down, and registrations with its id are refused (423) until the lock expires.
   */
  async lockEndpoint(
    endpointId: string,
    options: RequestOptions & { seconds?: number } = {},
  ): Promise<{ endpoint_id: string; locked_until: number }> {
    return await this.#request("post", `v2/endpoints/${endpointId}/lock`, {
      ...(options.seconds ? { seconds: options.seconds } : {}),
    }, options);
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
    return await this.#request("delete", `v2/endpoints/${endpointId}`, undefined, options);
  }

  /** An endpoint's status: `online` while its heartbeats arrive. */
  async getEndpointStatus(
    endpointId: string,
    options: RequestOptions = {},
  ): Promise<{ status: "online" | "offline"; logs: Record<string, unknown>[] }> {
    return await this.#request("get", `v2/endpoints/${endpointId}/status`, undefined, options);
  }
}

/**
 * One task's entry in {@linkcode FuncXClient.getBatchResult}.
 *
 * @example Sort a batch's outcomes
 * ```ts
 * import assert from "node:assert/strict";
 * import type { BatchResult } from "@funcx/sdk";
 * function describe(r: BatchResult): string {
 *   if (r.pending) return `${r.taskId}: ${r.status}`;
 *   return r.error ? `${r.taskId} failed: ${r.error.message}` : `${r.taskId} = ${r.result}`;
 * }
 * assert.equal(describe({ taskId: "t1", status: "success", pending: false, result: 42 }), "t1 = 42");
 * ```
 */
export interface BatchResult {
  /** The task id. */
  taskId: string;
  /** The task's state; `"unknown"` when the service does not know it (or it is not yours). */
  status: string;
  /** Whether it has not finished. */
  pending: boolean;
  /** The result, when it succeeded. */
  result?: unknown;
  /** Why it has no result: the remote failure, or `task_not_found`. */
  error?: TaskExecutionFailed | FuncxAPIError;
}

function batchEntry(id: string, t: Record<string, unknown> | undefined): BatchResult {
  if (!t || t["reason"] === "Unknown task id") {
    return {
      taskId: id,
      status: "unknown",
      pending: false,
      error: new FuncxAPIError(404, "task_not_found", `Task "${id}" was not found`, [id]),
    };
  }
  const status = String(t["status"]);
  if (!isTerminalState(status)) return { taskId: id, status, pending: true };
  if (status === "success") {
    try {
      return {
        taskId: id,
        status,
        pending: false,
        result: resultValue(id, String(t["result"] ?? "")),
      };
    } catch (err) {
      return { taskId: id, status: "failed", pending: false, error: err as TaskExecutionFailed };
    }
  }
  return {
    taskId: id,
    status,
    pending: false,
    error: taskFailure(
      id,
      typeof t["error_code"] === "string" ? t["error_code"] : "RemoteExecutionError",
      remoteErrorOf(typeof t["exception"] === "string" ? t["exception"] : undefined),
      typeof t["completion_t"] === "number" ? t["completion_t"] : undefined,
    ),
  };
}

/**
 * The value of a successful task's serialized result. A result that is not data (the source
 * text of a function the task returned, from a worker that let it pass) is the task's failure.
 */
export function resultValue(taskId: string, payload: string): unknown {
  try {
    return deserializeData(payload);
  } catch (err) {
    if (!(err instanceof DeserializationError) || !payload.startsWith(SerializerMethod.SOURCE)) {
      throw err;
    }
    throw new TaskExecutionFailed(taskId, "SerializationError", {
      name: "SerializationError",
      message: "The task returned a function; a task's result must be data",
      stack: "",
    });
  }
}

/** `promise`, or the signal's reason as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
