/**
 * The function routes of `FuncXClient`: registering a function, as a live function (sent as its
 * source text), as source text built at run time, or as a `ShellFunction`.
 *
 * @module
 */
import type { ClientTransport, RequestOptions } from "./_client_transport.ts";
import { SHELL_FUNCTION_NAME, type ShellFunction } from "./shell_function.ts";
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
    return await this.registerFunctionSource(SHELL_FUNCTION_NAME, shell.source(), options);
  }

  /** `POST v2/functions` with source text (JavaScript that evaluates to a function): its id. */
  async registerFunctionSource(
    name: string,
    source: string,
    options: Omit<RegisterFunctionOptions, "name"> = {},
  ): Promise<string> {
    return await this.#register(name, `${SerializerMethod.SOURCE}\n${name}:${source}`, options);
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
