/**
 * Which type the service's durable queues (`results` and each endpoint's task queue) get when the
 * operator does not say (`--queue-type auto`, the default). A quorum queue is replicated on a
 * cluster's nodes, and on a broker of one node it only costs: it delivers a message once its log
 * is on disk (about 0.6 ms more per hop, and most of the slow ones), where a classic queue
 * delivers at once and confirms once on disk, so that either loses nothing confirmed. So:
 *
 * - the type the vhost's `results` queue already has (a deployment keeps its queues' type across
 *   versions and restarts, and its endpoints' queues match it);
 * - else, for a new deployment, classic on a broker of one node and quorum on a cluster, as the
 *   management API counts its nodes;
 * - quorum when the service cannot ask (no management URL, or no answer): a load balancer may
 *   hide a cluster behind one address.
 *
 * The service resolves it once at start, before it declares anything (`server.ts`).
 *
 * @module
 */
import { QUEUE_TYPES, type QueueType, RESULTS_QUEUE } from "./broker.ts";
import type { BrokerManagement } from "./broker_management.ts";

/** What `--queue-type` takes: a queue type, or `auto` to let the service choose. */
export type QueueTypeSetting = QueueType | "auto";

/** The values of {@linkcode QueueTypeSetting}. */
export const QUEUE_TYPE_SETTINGS: readonly QueueTypeSetting[] = ["auto", ...QUEUE_TYPES];

/** The type chosen, and why (for the log). */
export interface QueueTypeChoice {
  type: QueueType;
  why: string;
}

/**
 * Chooses the queue type for `vhost` through `management` (see the module doc); never throws:
 * a broker it cannot ask gets quorum queues.
 */
export async function chooseQueueType(
  management: BrokerManagement | undefined,
  vhost: string,
): Promise<QueueTypeChoice> {
  if (!management) {
    return {
      type: "quorum",
      why: "no management URL to count the broker's nodes with (--queue-type classic for a " +
        "broker of one node)",
    };
  }
  try {
    const nodes = (await management.read<unknown[]>("nodes"))?.length ?? 0;
    const existing = await management.read<{ type?: unknown }>(
      `queues/${encodeURIComponent(vhost)}/${RESULTS_QUEUE}`,
    );
    if (existing !== undefined) {
      const type = QUEUE_TYPES.find((t) => t === existing.type);
      if (type === undefined) {
        return {
          type: "quorum",
          why: `the "${RESULTS_QUEUE}" queue is of type "${String(existing.type)}"`,
        };
      }
      return {
        type,
        why: `the "${RESULTS_QUEUE}" queue already is a ${type} queue` +
          (type === "classic" && nodes > 1
            ? ` (not replicated on this cluster of ${nodes} nodes: to have quorum queues, ` +
              `stop the service and its endpoints, delete the queues and start with ` +
              `--queue-type quorum)`
            : ""),
      };
    }
    return nodes === 1
      ? { type: "classic", why: "a new deployment on a broker of one node" }
      : { type: "quorum", why: `a new deployment on a cluster of ${nodes} nodes` };
  } catch (err) {
    return { type: "quorum", why: `the management API did not answer (${String(err)})` };
  }
}
