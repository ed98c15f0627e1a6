/**
 * Task submission and lookup: `POST /v2/submit` stores a batch of tasks and publishes each to its
 * endpoint's queue with broker confirms before answering; `GET /v2/tasks/{id}` reads one back.
 *
 * @module
 */
import { Hono } from "hono";
import { packMessage, serialize, type TaskContainer } from "../../sdk/protocol/mod.ts";
import { HttpError, isUuid, requireUuid } from "../http_error.ts";
import { type AppDeps, type AppEnv, readJson } from "../app.ts";
import type { OutgoingTask } from "../broker.ts";
import { userQueuePrefix, withLogin } from "../broker_credentials.ts";
import type { FunctionRecord, NewTask, TaskRecord } from "../store.ts";
import { usableFunction } from "./functions.ts";
import { usableEndpoint } from "./endpoints.ts";

/** One entry of a submit answer. */
export type SubmitResult =
  | { status: "Success"; task_uuid: string; http_status_code: 200 }
  | (ReturnType<HttpError["toJSON"]> & { task_uuid: string | null });

/** The JSON form of a task for `GET /v2/tasks/{id}` and batch status. */
export function taskView(t: TaskRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { task_id: t.id, status: t.status };
  if (t.result !== null) out["result"] = t.result;
  if (t.exception !== null) out["exception"] = t.exception;
  if (t.errorCode !== null) out["error_code"] = t.errorCode;
  if (t.completionT !== null) out["completion_t"] = t.completionT;
  if (t.transitions) out["task_transitions"] = t.transitions;
  return out;
}

function parseSubmit(
  body: unknown,
): { groupId: string | undefined; tasks: unknown[]; createQueue: boolean } {
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
  return {
    createQueue: cq,
    groupId: gid === undefined || gid === null ? undefined : requireUuid(gid, "task_group_id"),
    tasks: b["tasks"],
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
      const { groupId: requested, tasks, createQueue } = parseSubmit(
        await readJson(c.req.raw, deps.settings.maxRequestBytes),
      );
      const groupId = requested ?? crypto.randomUUID();
      const owner = await deps.store.taskGroupOwner(groupId);
      if (owner !== undefined && owner !== user.id) throw groupForbidden(groupId);
      const results: SubmitResult[] = [];
      const accepted: NewTask[] = [];
      const outgoing: OutgoingTask[] = [];
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
      for (const [i, entry] of tasks.entries()) {
        const taskId = crypto.randomUUID();
        try {
          if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[2] !== "string") {
            throw new HttpError(
              400,
              "bad_request",
              `Invalid request field "tasks.${i}": expected [function_id, endpoint_id, payload]`,
              [`tasks.${i}`],
            );
          }
          const [fid, eid, payload] = entry as [unknown, unknown, string];
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
          accepted.push({ id: taskId, functionId, endpointId });
          outgoing.push({
            endpointId,
            taskId,
            body: packMessage({
              message_type: "task",
              data: {
                task_id: taskId,
                container_id: fn.containerId,
                container: await containerOf(fn.containerId),
                task_buffer: fn.code + payload,
              },
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
        // decides, in the same transaction as the insert).
        if (!await deps.store.addTasks(user.id, groupId, accepted)) throw groupForbidden(groupId);
        if (createQueue) {
          const queue = `${userQueuePrefix(user.id)}${groupId}`;
          try {
            await deps.broker.declareResultQueue(queue, deps.settings.taskTtlS * 1000);
            await deps.store.setResultQueue(groupId, queue);
          } catch (err) {
            await deps.store.failTasks(
              accepted.map((t) => t.id),
              "broker_unavailable",
              String(err),
            );
            throw new HttpError(
              503,
              "broker_unavailable",
              `Cannot create the result queue of task group "${groupId}": the broker is unavailable`,
              [groupId],
              { cause: err },
            );
          }
        }
        try {
          await deps.broker.publishTasks(outgoing);
        } catch (err) {
          const reason = `Task could not be queued: the broker is unavailable (${String(err)})`;
          await deps.store.failTasks(accepted.map((t) => t.id), "broker_unavailable", reason);
          const failed = new Set(accepted.map((t) => t.id));
          for (let i = 0; i < results.length; i++) {
            const r = results[i]!;
            if (r.task_uuid && failed.has(r.task_uuid)) {
              results[i] = {
                ...new HttpError(503, "broker_unavailable", reason).toJSON(),
                task_uuid: r.task_uuid,
              };
            }
          }
        }
      }
      const anyFailed = results.some((r) => "code" in r);
      return c.json(
        { response: "batch", task_group_id: groupId, results },
        anyFailed ? 207 : 200,
      );
    })
    .get("/get_amqp_result_connection_url", async (c) => {
      const user = c.get("user");
      let url = deps.settings.publicAmqpUrl;
      if (deps.credentials) {
        try {
          url = withLogin(url, await deps.credentials.forUser(user.id));
        } catch (err) {
          throw new HttpError(
            503,
            "broker_unavailable",
            "Cannot create broker credentials: the broker is unavailable",
            [],
            { cause: err },
          );
        }
      }
      return c.json({ connection_url: url, queue_prefix: userQueuePrefix(user.id) });
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
      const reason = "Task was cancelled by its owner";
      await deps.store.failTasks(
        [id],
        "TaskCancelled",
        serialize({ name: "TaskCancelled", message: reason, stack: "" }),
      );
      // The endpoint stops it if it is queued or running there; its late result is dropped.
      await deps.broker.publishToEndpoint(
        task.endpointId,
        packMessage({ message_type: "task_cancel", data: { task_id: id } }),
      ).catch(() => {});
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
