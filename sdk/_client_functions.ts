/**
 * The function routes of `FuncXClient`: registering a function, as a live function (sent as its
 * source text), as source text built at run time, or as a `ShellFunction`.
 *
 * @module
 */
import type { ClientTransport, RequestOptions } from "./_client_transport.ts";
import type { ShellFunction } from "./shell_function.ts";
import { packBuffers, serialize, SerializerMethod } from "./protocol/mod.ts";

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
 * A registered function, as {@linkcode FuncXClient.getFunctions} lists it.
 *
 * @example Name and id of each function
 * ```ts
 * import assert from "node:assert/strict";
 * import type { FunctionInfo } from "@funcx/sdk";
 * const fn: FunctionInfo = {
 *   function_uuid: "3f0c1a9e-7d2b-4c55-9e61-0a8f4b2c1d3e",
 *   function_name: "add",
 *   description: "",
 *   public: false,
 *   container_uuid: null,
 *   created_at: 1767225600,
 * };
 * assert.equal(`${fn.function_name} ${fn.function_uuid}`.split(" ")[0], "add");
 * ```
 */
export interface FunctionInfo {
  /** The function's id. */
  function_uuid: string;
  /** The name it was registered under. */
  function_name: string;
  /** Its description. */
  description: string;
  /** Whether other users may run it. */
  public: boolean;
  /** The container it runs in, if any. */
  container_uuid: string | null;
  /** When it was registered, in seconds since the epoch. */
  created_at: number;
}

/** The function routes, over the client's transport. */
export class FunctionRoutes {
  readonly #transport: ClientTransport;

  /** Routes over `transport`. */
  constructor(transport: ClientTransport) {
    this.#transport = transport;
  }

  /** `POST v2/functions` with `fn`'s source text: its id. */
  async registerFunction(
    fn: (...args: never[]) => unknown,
    options: RegisterFunctionOptions = {},
  ): Promise<string> {
    if (typeof fn !== "function") {
      throw new TypeError(`Cannot register ${typeof fn}: expected a function`);
    }
    return await this.#register(options.name ?? fn.name ?? "", serialize(fn), options);
  }

  /** A {@linkcode ShellFunction}, registered under the name its runner knows. */
  async registerShellFunction(
    shell: ShellFunction,
    options: Omit<RegisterFunctionOptions, "name"> = {},
  ): Promise<string> {
    return await this.registerFunctionSource(shell.functionName, shell.source(), options);
  }

  /** `POST v2/functions` with source text (JavaScript that evaluates to a function): its id. */
  async registerFunctionSource(
    name: string,
    source: string,
    options: Omit<RegisterFunctionOptions, "name"> = {},
  ): Promise<string> {
    return await this.#register(name, `${SerializerMethod.SOURCE}\n${name}:${source}`, options);
  }

  /** `GET v2/functions`: the user's functions, newest first, without their code. */
  async getFunctions(options: RequestOptions & { limit?: number } = {}): Promise<FunctionInfo[]> {
    const body = await this.#transport.request<{ functions: FunctionInfo[] }>(
      "get",
      `v2/functions?limit=${options.limit ?? 100}`,
      undefined,
      options,
    );
    return body.functions;
  }

  async #register(
    name: string,
    code: string,
    options: Omit<RegisterFunctionOptions, "name">,
  ): Promise<string> {
    const body = await this.#transport.request<{ function_uuid: string }>("post", "v2/functions", {
      function_name: name,
      function_code: packBuffers([code]),
      description: options.description ?? "",
      public: options.public ?? false,
      container_uuid: options.containerId ?? null,
    }, options);
    return body.function_uuid;
  }
}
