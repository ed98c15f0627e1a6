/**
 * Registration of an endpoint with the service (`POST /v2/endpoints`), done by `start` in the
 * foreground so that its errors reach the user. Failures are classified so the CLI can exit with
 * funcX's codes: blocked (409/410/423), unreachable service, refused credentials, bad answer.
 *
 * @module
 */
import { hostname } from "node:os";
import type { EndpointRegistration, FuncXClient } from "../sdk/client.ts";
import { FuncxAPIError } from "../sdk/errors.ts";
import type { EndpointConfig } from "./config.ts";
import { ENDPOINT_VERSION } from "./version.ts";

/** Why a registration failed. */
export type RegistrationFailure = "blocked" | "unreachable" | "unauthorized" | "bad_response";

/** Registration failed; `kind` says how. */
export class RegistrationError extends Error {
  /** How it failed. */
  readonly kind: RegistrationFailure;
  /** Builds the error. */
  constructor(kind: RegistrationFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RegistrationError";
    this.kind = kind;
  }
}

/** Options of {@linkcode registerEndpoint}. */
export interface RegisterOptions {
  /** The endpoint's (directory) name. */
  name: string;
  /** Id to register under; a new one when unset. */
  endpointId?: string | undefined;
  /** The validated config, sent as metadata. */
  config: EndpointConfig;
}

/** Registers the endpoint and checks the answer. */
export async function registerEndpoint(
  client: FuncXClient,
  options: RegisterOptions,
): Promise<EndpointRegistration> {
  const { name, endpointId, config } = options;
  let reg: EndpointRegistration;
  try {
    reg = await client.registerEndpoint(config.display_name ?? name, {
      ...(endpointId ? { endpointId } : {}),
      metadata: {
        endpoint_version: ENDPOINT_VERSION,
        hostname: hostname(),
        local_user: Deno.env.get("USER") ?? null,
        name,
        display_name: config.display_name,
        heartbeat_period: config.heartbeat_period,
        heartbeat_threshold: config.heartbeat_threshold,
        allowed_functions: config.allowed_functions,
        config: { ...config },
      },
    });
  } catch (err) {
    const what = `Cannot register endpoint "${name}"`;
    if (err instanceof FuncxAPIError) {
      const s = err.httpStatus;
      if (s === 409 || s === 410 || s === 423) {
        throw new RegistrationError("blocked", `Endpoint registration blocked: ${err.message}`, {
          cause: err,
        });
      }
      if (s === 401 || s === 403) {
        throw new RegistrationError("unauthorized", `${what}: ${err.message}`, { cause: err });
      }
      if (s >= 500 || err.codeName === "network_error") {
        throw new RegistrationError("unreachable", `${what}: ${err.message}`, { cause: err });
      }
      throw new RegistrationError("bad_response", `${what}: ${err.message}`, { cause: err });
    }
    throw new RegistrationError(
      "unreachable",
      `${what}: the service at "${client.serviceAddress}" cannot be reached (${
        (err as Error).message
      })`,
      { cause: err },
    );
  }
  if (typeof reg?.endpoint_id !== "string" || !reg.task_queue_info?.connection_url) {
    throw new RegistrationError(
      "bad_response",
      `Cannot register endpoint "${name}": the service's answer has no endpoint id or queue info`,
    );
  }
  if (endpointId && reg.endpoint_id !== endpointId) {
    throw new RegistrationError(
      "bad_response",
      `Cannot register endpoint "${name}": asked for id "${endpointId}", service gave "${reg.endpoint_id}"`,
    );
  }
  return reg;
}
