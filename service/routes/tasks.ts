/**
 * Task submission and lookup: `POST /v2/submit` stores a batch of tasks, each with its message in
 * the outbox, in one transaction and answers; the outbox relay publishes them. `GET /v2/tasks/{id}`
 * reads one back; `POST /v2/result_streams` gives an SDK process a result queue of its own.
 *
 * @module
 */
import { Hono } from "hono";
import { createHash } from "node:crypto";
import {
  encodeTask,
  resolveResourceSpecification,
  type ResourceSpecificationWire,
  type TaskContainer,
} from "../../sdk/protocol/mod.ts";
import { HttpError, isUuid, requireUuid } from "../http_error.ts";
import { type AppDeps, type AppEnv, readJson } from "../context.ts";
import { userQueuePrefix, withLogin } from "../broker_credentials.ts";
import { parseBrokerUrls } from "../../sdk/_broker_addresses.ts";
import { IDEMPOTENCY_HEADER } from "../idempotency.ts";
import { serviceMetrics } from "../metrics.ts";
import type { FunctionRecord, NewTask, TaskRecord } from "../store.ts";
import { usableFunction } from "./functions.ts";
import { usableEndpoint } from "./endpoints.ts";
import { cancelTasks } from "../operator_actions.ts";
import { nowMs, startSubmitHop, submittedTraceparent, TRACING } from "../task_trace.ts";
import type { Hop } from "../../sdk/_tracing.ts";

/** The routing key of a task group's result streams (`user-<user_id>.<group_id>`). */
export function groupRoutingKey(userId: string, groupId: string): string {
  return `${userQueuePrefix(userId)}${groupId}`;
}

/**
 * Task ids derived from `seed` by position: the same seed gives the same ids (UUID version 8:
 * the first 12 bytes of SHA-256 of the seed, then the position).
 */
export function derivedIds(seed: string): (i: number) => string {
  // node:crypto hashes in place; crypto.subtle would send this to a thread pool and back.
  const base = new Uint8Array(createHash("sha256").update(seed).digest()).slice(0, 16);
  base[6] = (base[6]! & 0x0f) | 0x80;
  base[8] = (base[8]! & 0x3f) | 0x80;
  return (i) => {
    const b = base.slice();
    new DataView(b.buffer).setUint32(12, i);
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${
      h.slice(20)
    }`;
  };
}

/**
 * How long a result stream's queue outlives its last consumer. A stream cut off for longer asks
 * for a new queue and reads what it missed from the store.
 */
export const STREAM_QUEUE_IDLE_MS = 2 * 60_000;

/**
 * The AMQP URLs (one per broker node) with the user's own broker login (stable: asking again
 * cuts off no stream).
 */
async function resultStreamUrls(deps: AppDeps, userId: string): Promise<string[]> {
  const urls = parseBrokerUrls(deps.settings.publicAmqpUrl, "public broker URL");
  if (!deps.credentials) return urls;
  try {
    const login = await deps.credentials.forUser(userId);
    return urls.map((u) => withLogin(u, login));
  } catch (err) {
    throw new HttpError(
      503,
      "broker_unavailable",
      "Cannot create broker credentials: the broker is unavailable",
      [],
      { cause: err },
      {},
      { "retry-after": "2" },
    );
  }
}

/** One entry of a submit answer. */
export type SubmitResult =
  | { status: "Success"; task_uuid: string; http_status_code: 200 }
  | (ReturnType<HttpError["toJSON"]> & { task_uuid: string | null });

/** The JSON form of a task for `GET /v2/tasks/{id}` and batch status. */
export function taskView(t: TaskRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    task_id: t.id,
    status: t.status,
    endpoint_id: t.endpointId,
  };
  if (t.result !== null) out["result"] = t.result;
  if (t.exception !== null) out["exception"] = t.exception;
  if (t.errorCode !== null) out["error_code"] = t.errorCode;
  if (t.completionT !== null) out["completion_t"] = t.completionT;
  if (t.transitions) out["task_transitions"] = t.transitions;
  if (t.resourceSpecification) out["resource_specification"] = t.resourceSpecification;
  return out;
}

/**
 * The options of a submitted task (the optional 4th member of its entry): its resource
 * specification, checked and completed, or null.
 */
function taskOptions(entry: unknown, i: number): ResourceSpecificationWire | null {
  if (entry === undefined || entry === null) return null;
  const field = `tasks.${i}.3`;
  if (typeof entry !== "object" || Array.isArray(entry)) {
    throw new HttpError(
      400,
      "bad_request",
      `Invalid request field "${field}": expected an object ({resource_specification})`,
      [field],
    );
  }
  const { resource_specification: spec, traceparent: _, ...rest } = entry as Record<
    string,
    unknown
  >;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) {
    throw new HttpError(
      400,
      "bad_request",
      `Invalid request field "${field}.${unknown}": unknown task option`,
      [`${field}.${unknown}`],
    );
  }
  if (spec === undefined || spec === null) return null;
  try {
    return resolveResourceSpecification(spec);
  } catch (err) {
    throw new HttpError(
      400,
      "bad_request",
      `Invalid request field "${field}.resource_specification": ${(err as Error).message}`,
      [`${field}.resource_specification`],
    );
  }
}

function parseSubmit(
  body: unknown,
): {
  groupId: string | undefined;
  tasks: unknown[];
  createQueue: boolean;
  userEndpointConfig: Record<string, unknown> | undefined;
} {
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(400, "bad_request", 'Request body must be a JSON object with "tasks"');
  }
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b["tasks"])) {
    throw new HttpError(400, "bad_request", 'Invalid request field "tasks": expected an array', [
      "tasks",
    ]);
  }
  const gid = b["task_group_id"];
  const cq = b["create_websocket_queue"] ?? b["create_queue"] ?? false;
  if (typeof cq !== "boolean") {
    throw new HttpError(
      400,
      "bad_request",
      'Invalid request field "create_websocket_queue": expected a boolean',
      ["create_websocket_queue"],
    );
  }
  // Values for a multi-user endpoint's template; that endpoint checks them against its schema.
  const uec = b["user_endpoint_config"] ?? undefined;
  if (uec !== undefined && (typeof uec !== "object" || Array.isArray(uec))) {
    throw new HttpError(
      400,
      "bad_request",
      'Invalid request field "user_endpoint_config": expected an object',
      ["user_endpoint_config"],
    );
  }
  return {
    createQueue: cq,
    groupId: gid === undefined || gid === null ? undefined : requireUuid(gid, "task_group_id"),
    tasks: b["tasks"],
    userEndpointConfig: uec as Record<string, unknown> | undefined,
  };
}

function groupForbidden(groupId: string): HttpError {
  return new HttpError(
    403,
    "task_group_access_forbidden",
    `Task group "${groupId}" belongs to another user`,
    [groupId],
  );
}

/** Task routes. */
export function taskRoutes(deps: AppDeps): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .post("/submit", async (c) => {
      const user = c.get("user");
      const started = TRACING ? nowMs() : 0;
      const hops = new Map<string, Hop>();
      const { groupId: requested, tasks, createQueue, userEndpointConfig } = parseSubmit(
        await readJson(c.req.raw, deps.settings.maxRequestBytes),
      );
      const groupId = requested ?? crypto.randomUUID();
      const owner = await deps.store.taskGroupOwner(groupId);
      if (owner !== undefined && owner !== user.id) throw groupForbidden(groupId);
      const results: SubmitResult[] = [];
      const accepted: NewTask[] = [];
      const fnCache = new Map<string, FunctionRecord>();
      const allowed = new Map<string, Set<string>>();
      // The image of a function's container goes with each of its tasks (looked up once).
      const containers = new Map<string, Promise<TaskContainer | null>>();
      const containerOf = (id: string | null): Promise<TaskContainer | null> => {
        if (id === null) return Promise.resolve(null);
        let c = containers.get(id);
        if (!c) {
          c = deps.store.getContainer(id).then((r) =>
            r ? { container_id: r.id, container_type: r.type, location: r.location } : null
          );
          containers.set(id, c);
        }
        return c;
      };
      // A request with an Idempotency-Key names its tasks after the key: run again (its answer
      // was lost with a service that died), it finds them stored and adds nothing.
      const idempotencyKey = c.req.header(IDEMPOTENCY_HEADER);
      const taskIdOf = idempotencyKey === undefined
        ? () => crypto.randomUUID()
        : derivedIds(`${user.id}\0${idempotencyKey}`);
      for (const [i, entry] of tasks.entries()) {
        const taskId = taskIdOf(i);
        try {
          if (
            !Array.isArray(entry) || entry.length < 3 || entry.length > 4 ||
            typeof entry[2] !== "string"
          ) {
            throw new HttpError(
              400,
              "bad_request",
              `Invalid request field "tasks.${i}": expected [function_id, endpoint_id, payload] ` +
                "or [function_id, endpoint_id, payload, {resource_specification}]",
              [`tasks.${i}`],
            );
          }
          const [fid, eid, payload] = entry as [unknown, unknown, string];
          const resourceSpecification = taskOptions(entry[3], i);
          if (!isUuid(fid)) requireUuid(fid, "function");
          if (!isUuid(eid)) requireUuid(eid, "endpoint");
          const functionId = (fid as string).toLowerCase();
          const endpointId = (eid as string).toLowerCase();
          let fn = fnCache.get(functionId);
          if (!fn) {
            fn = await usableFunction(deps, user, functionId);
            fnCache.set(functionId, fn);
          }
          let allow = allowed.get(endpointId);
          if (!allow) {
            await usableEndpoint(deps, user, endpointId);
            allow = new Set(await deps.store.whitelist(endpointId));
            allowed.set(endpointId, allow);
          }
          if (allow.size > 0 && !allow.has(functionId)) {
            throw new HttpError(
              403,
              "function_not_permitted",
              `Function "${functionId}" is not in the allow-list of endpoint "${endpointId}"`,
              [functionId, endpointId],
            );
          }
          const traceparent = startSubmitHop(submittedTraceparent(entry[3]), started, taskId, hops);
          accepted.push({
            id: taskId,
            functionId,
            endpointId,
            resourceSpecification,
            message: encodeTask({
              task_id: taskId,
              container_id: fn.containerId,
              container: await containerOf(fn.containerId),
              task_buffer: fn.code + payload,
              function_id: functionId,
              user: user.name,
              ...(userEndpointConfig ? { user_endpoint_config: userEndpointConfig } : {}),
              ...(resourceSpecification ? { resource_specification: resourceSpecification } : {}),
              ...(traceparent ? { traceparent } : {}),
              // The endpoint publishes the result under it, straight to the group's streams.
              ...(deps.settings.directResults !== false
                ? { result_route: groupRoutingKey(user.id, groupId) }
                : {}),
            }),
          });
          results.push({ status: "Success", task_uuid: taskId, http_status_code: 200 });
        } catch (err) {
          if (!(err instanceof HttpError)) throw err;
          results.push({ ...err.toJSON(), task_uuid: null });
        }
      }
      if (accepted.length > 0) {
        // The group may have been created by another user since the check above (the store
        // decides, in the same transaction as the insert). Each task goes in with its message in
        // the outbox; the relay publishes it, so the answer never waits on the broker.
        const inserted = await deps.store.addTasks(user.id, groupId, accepted, {
          leaseUntil: deps.outbox.leaseUntil(),
          ...(createQueue ? { resultQueue: groupRoutingKey(user.id, groupId) } : {}),
        });
        for (const hop of hops.values()) hop.end();
        if (inserted === false) throw groupForbidden(groupId);
        serviceMetrics.tasksSubmitted.inc({}, inserted.length);
        deps.outbox.push(inserted.map((t) => ({
          taskId: t.id,
          endpointId: t.endpointId,
          body: t.message!,
          ...(hops.size > 0 ? { traceparent: hops.get(t.id)?.traceparent } : {}),
        })));
      }
      const anyFailed = results.some((r) => "code" in r);
      return c.json(
        { response: "batch", task_group_id: groupId, results },
        anyFailed ? 207 : 200,
      );
    })
    .get("/get_amqp_result_connection_url", async (c) => {
      const user = c.get("user");
      const urls = await resultStreamUrls(deps, user.id);
      return c.json({
        connection_url: urls[0],
        connection_urls: urls,
        queue_prefix: userQueuePrefix(user.id),
      });
    })
    .post("/result_streams", async (c) => {
      const user = c.get("user");
      const body = await readJson(c.req.raw, deps.settings.maxRequestBytes);
      const groupId = requireUuid(
        (body as { task_group_id?: unknown } | null)?.task_group_id,
        "task_group_id",
      ).toLowerCase();
      const routingKey = groupRoutingKey(user.id, groupId);
      // The group is created when new (a stream may start before the first submit lands), and
      // its results are forwarded from now on.
      if (!await deps.store.addTasks(user.id, groupId, [], { resultQueue: routingKey })) {
        throw groupForbidden(groupId);
      }
      const queue = `${routingKey}.${crypto.randomUUID().slice(0, 13)}`;
      const urls = await resultStreamUrls(deps, user.id);
      await deps.broker.declareStreamQueue(queue, routingKey, STREAM_QUEUE_IDLE_MS);
      // Recorded once the queue is bound: a result of a task submitted before now may have left
      // its endpoint before the binding, so the result processor forwards those.
      await deps.store.setStreamAttached(groupId, Date.now() / 1000);
      return c.json(
        { task_group_id: groupId, connection_url: urls[0], connection_urls: urls, queue },
        201,
      );
    })
    .post("/batch_status", async (c) => {
      const body = await readJson(c.req.raw, deps.settings.maxRequestBytes);
      const ids = (body as { task_ids?: unknown })?.task_ids;
      if (!Array.isArray(ids)) {
        throw new HttpError(
          400,
          "bad_request",
          'Invalid request field "task_ids": expected an array',
          [
            "task_ids",
          ],
        );
      }
      const user = c.get("user");
      const results: Record<string, unknown> = {};
      for (const raw of ids) {
        const id = isUuid(raw) ? raw.toLowerCase() : undefined;
        const task = id ? await deps.store.getTask(id) : undefined;
        if (task && task.ownerId === user.id) {
          results[task.id] = taskView(task);
        } else {
          // Unknown and other users' tasks look the same: no existence leak.
          results[String(raw)] = { task_id: raw, status: "failed", reason: "Unknown task id" };
        }
      }
      return c.json({ response: "batch", results });
    })
    .get("/taskgroup/:id", async (c) => {
      const id = requireUuid(c.req.param("id"), "task_group");
      if (await deps.store.taskGroupOwner(id) !== c.get("user").id) {
        throw new HttpError(404, "task_group_not_found", `Task group "${id}" was not found`, [id]);
      }
      return c.json({
        taskgroup_id: id,
        tasks: (await deps.store.taskGroupTasks(id)).map((t) => ({ id: t })),
      });
    })
    .post("/tasks/:id/cancel", async (c) => {
      const id = requireUuid(c.req.param("id"), "task");
      const task = await deps.store.getTask(id);
      if (!task || task.ownerId !== c.get("user").id) {
        throw new HttpError(404, "task_not_found", `Task "${id}" was not found`, [id]);
      }
      if (task.status === "success" || task.status === "failed") {
        return c.json({ task_id: id, cancelled: false, status: task.status });
      }
      await cancelTasks(deps, [task]);
      return c.json({ task_id: id, cancelled: true, status: "failed" });
    })
    .get("/tasks/:id", async (c) => {
      const id = requireUuid(c.req.param("id"), "task");
      const task = await deps.store.getTask(id);
      if (!task || task.ownerId !== c.get("user").id) {
        throw new HttpError(404, "task_not_found", `Task "${id}" was not found`, [id]);
      }
      return c.json(taskView(task));
    });
}
