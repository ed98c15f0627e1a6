/**
 * Playing an endpoint over AMQP in service tests: take tasks from its queue with the login the
 * service handed out, publish results and status reports to `results`, and poll for their effect.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { TaskState } from "../../sdk/protocol/mod.ts";
import type { EndpointRegistration } from "../../mod.ts";
import {
  type Message,
  nowNs,
  packMessage,
  serialize,
  type TaskMessage,
  unpackMessage,
} from "../../sdk/protocol/mod.ts";

/** Takes up to `n` messages from a queue with the given login. */
export async function take(
  url: string,
  queue: string,
  n: number,
  timeoutMs = 10_000,
): Promise<Message[]> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    const out: Message[] = [];
    const deadline = Date.now() + timeoutMs;
    while (out.length < n && Date.now() < deadline) {
      const msg = await ch.get(queue, { noAck: true });
      if (!msg) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      out.push(unpackMessage(new Uint8Array(msg.content)));
    }
    return out;
  } finally {
    await conn.close().catch(() => {});
  }
}

/**
 * Takes messages from an endpoint's task queue until `n` tasks came (a `task_batch` holds many),
 * or the time is up; returns the tasks.
 */
export async function takeTasks(
  url: string,
  queue: string,
  n: number,
  timeoutMs = 10_000,
): Promise<TaskMessage[]> {
  const tasks: TaskMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (tasks.length < n && Date.now() < deadline) {
    for (const m of await take(url, queue, 1, Math.max(0, deadline - Date.now()))) {
      if (m.message_type === "task") tasks.push(m.data);
      else if (m.message_type === "task_batch") tasks.push(...m.data.tasks);
      else throw new Error(`Expected tasks on "${queue}", got a ${m.message_type} message`);
    }
  }
  return tasks;
}

/** Publishes messages to `results` as an endpoint, waiting for confirms. */
export async function publishAs(
  reg: EndpointRegistration,
  messages: Message[],
  routingKey?: string,
) {
  const conn = await amqp.connect(reg.result_queue_info.connection_url);
  try {
    const ch = await conn.createConfirmChannel();
    for (const m of messages) {
      const body = packMessage(m);
      ch.publish(
        "results",
        routingKey ?? reg.result_queue_info.queue_publish_kwargs.routing_key,
        Buffer.from(body),
        {
          persistent: true,
        },
      );
    }
    await ch.waitForConfirms();
  } finally {
    await conn.close().catch(() => {});
  }
}

/** A successful result message for a task. */
export function resultFor(taskId: string, value: unknown): Message {
  return {
    message_type: "result",
    data: {
      task_id: taskId,
      data: serialize(value),
      error_details: null,
      task_statuses: [{ timestamp: nowNs(), state: TaskState.EXECUTION_END, actor: "worker" }],
    },
  };
}

/** Polls `fn` until it gives a value (at most 15 s). */
export async function until<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
