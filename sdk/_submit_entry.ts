/**
 * One task of a submit request as it goes on the wire; shared by the client's tasks module and
 * `Batch`, which build them.
 *
 * @module
 */
import type { ResourceSpecificationWire } from "./protocol/resource_specification.ts";

/**
 * One task of a submit batch: `[function_id, endpoint_id, payload]`, and for an MPI task its
 * resource specification as a 4th member `{resource_specification}`.
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
export type SubmitEntry =
  | [string, string, string]
  | [string, string, string, {
    resource_specification?: ResourceSpecificationWire;
    /** W3C trace context of the task's trace (when the SDK traces tasks). */
    traceparent?: string;
  }];

/**
 * A submit entry, with the task's resource specification when it has one, and the trace context
 * of its trace when it is traced.
 */
export function submitEntry(
  functionId: string,
  endpointId: string,
  payload: string,
  spec: ResourceSpecificationWire | undefined,
  traceparent?: string,
): SubmitEntry {
  if (!spec && !traceparent) return [functionId, endpointId, payload];
  return [functionId, endpointId, payload, {
    ...(spec ? { resource_specification: spec } : {}),
    ...(traceparent ? { traceparent } : {}),
  }];
}
