/**
 * The typed protocol between a multi-user endpoint and one of its user endpoints, over the user
 * endpoint's stdin and stdout in the engine's frames (4-byte length, CBOR). The multi-user
 * endpoint sends `start` first; the user endpoint answers `ready` with its protocol version and
 * the uid and gid it runs as, which the multi-user endpoint checks before it hands over a task (a
 * peer that fails the handshake is stopped, never used).
 *
 * @module
 */
import type { ResultMessage } from "../sdk/protocol/mod.ts";
import type { ResourceSpecificationWire } from "../sdk/protocol/resource_specification.ts";
import type { EngineStatus } from "./engine/mod.ts";

/** Version of this protocol. */
export const USER_ENDPOINT_PROTOCOL_VERSION = 1;

/** What the multi-user endpoint sends a user endpoint. */
export type ToUserEndpoint =
  | {
    type: "start";
    protocol: number;
    /** The `engine` section rendered from the template. */
    engine: Record<string, unknown>;
    /** A name for its log lines. */
    label: string;
  }
  | {
    type: "task";
    task_id: string;
    buffer: string;
    container?: string;
    resource_specification?: ResourceSpecificationWire;
  }
  | { type: "cancel"; task_id: string }
  | { type: "status" }
  | { type: "shutdown" };

/** What a user endpoint sends back. */
export type FromUserEndpoint =
  | { type: "ready"; protocol: number; pid: number; uid: number; gid: number }
  | { type: "result"; result: ResultMessage }
  /** The task did not finish because the user endpoint's engine closed. */
  | { type: "closed"; task_id: string }
  | { type: "status"; status: EngineStatus }
  | { type: "fatal"; message: string };
