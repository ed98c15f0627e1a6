/**
 * The typed protocol between the interchange (in the endpoint daemon) and its managers (one per
 * node or block), carried in {@link ./frames.ts} frames over TCP.
 *
 * Handshake: the interchange says `hello` with a random nonce; the manager answers `register`
 * with an HMAC-SHA256 of the nonce keyed by the per-endpoint secret (so the secret never crosses
 * the network); the interchange answers `welcome` or `refused` and closes. The manager then runs
 * `worker_init`, starts its workers and says `ready` with its capacity (or `fatal`) once the
 * first of them are up; `workers` with its grown capacity as the others come, and from then on
 * `warm` with the container images it has workers in whenever they change, and `ahead` with the
 * tasks its busy workers can take beyond their current one whenever that changes.
 *
 * @module
 */
import type { ResultMessage } from "../../sdk/protocol/mod.ts";
import type { ResourceSpecificationWire } from "../../sdk/protocol/resource_specification.ts";

/** Version of the interchange ↔ manager protocol (3: `ahead`). */
export const MANAGER_PROTOCOL_VERSION = 3;

/** A task as the interchange hands it to a manager. */
export interface WireTask {
  /** The task's id. */
  task_id: string;
  /** The task buffer (packed function and arguments). */
  buffer: string;
  /** The container image it runs in; absent for a plain worker. */
  container?: string;
  /** What an MPI task asks for (MPI mode); absent for the default or a plain task. */
  resource_specification?: ResourceSpecificationWire;
}

/** What the interchange sends a manager. */
export type ToManager =
  | { type: "hello"; protocol: number; nonce: string }
  | { type: "welcome" }
  | { type: "refused"; reason: string }
  | { type: "tasks"; tasks: WireTask[] }
  | { type: "cancel"; task_id: string }
  | { type: "heartbeat" }
  | { type: "shutdown" };

/** What a manager sends the interchange. */
export type FromManager =
  | {
    type: "register";
    protocol: number;
    manager_id: string;
    block_id: string;
    hmac: string;
    hostname: string;
    pid: number;
  }
  /** Its first workers are up; `workers` is how many. */
  | { type: "ready"; workers: number }
  /** More of its workers are up (those still starting when it said `ready`): now `workers`. */
  | { type: "workers"; workers: number }
  /** The container images the manager has ready workers in, sent whenever that set changes. */
  | { type: "warm"; kinds: string[] }
  /**
   * How many tasks its workers can take beyond the one each runs (their tasks are short, see
   * `worker_pool.ts`): the interchange sends it that many more than its prefetch.
   */
  | { type: "ahead"; slots: number }
  | { type: "fatal"; message: string }
  | { type: "results"; results: ResultMessage[] }
  | { type: "heartbeat" };

async function hmacKey(secret: string): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^(?:[0-9a-f]{2})+$/.test(hex)) return undefined;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A fresh random secret or nonce, as hex. */
export function randomHex(bytes = 32): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)).buffer);
}

/** The manager's proof that it knows `secret`: HMAC-SHA256 of `nonce`, as hex. */
export async function proveSecret(secret: string, nonce: string): Promise<string> {
  const key = await hmacKey(secret);
  return toHex(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(nonce)));
}

/** Checks a proof from {@linkcode proveSecret} in constant time. */
export async function checkSecret(secret: string, nonce: string, proof: string): Promise<boolean> {
  const sig = fromHex(proof);
  if (!sig) return false;
  const key = await hmacKey(secret);
  return await crypto.subtle.verify("HMAC", key, sig, new TextEncoder().encode(nonce));
}
