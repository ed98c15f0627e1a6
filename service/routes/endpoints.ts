/**
 * Endpoint registration and status: `POST /v2/endpoints` (register or re-register; declares the
 * endpoint's task queue and returns where to consume and publish), `GET /v2/endpoints/{id}`,
 * `GET /v2/endpoints/{id}/status` (online while its last status report is alive).
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { getLogger } from "@logtape/logtape";
import { resultRoutingKey, RESULTS_EXCHANGE, RESULTS_QUEUE, TASKS_EXCHANGE } from "../broker.ts";
import { withLogin } from "../broker_credentials.ts";
import { deleteEndpoint, lockEndpoint, shutdownCommand } from "../operator_actions.ts";
import { parseBrokerUrls } from "../../sdk/_broker_addresses.ts";
import { HttpError, requireUuid } from "../http_error.ts";
import { usableFunction } from "./functions.ts";
import { type AppDeps, type AppEnv, parseBody, readJson } from "../context.ts";
import type { EndpointRecord, UserRecord } from "../store.ts";

const log = getLogger(["funcx", "service", "endpoints"]);

/** Seconds a `stop --remote` lock lasts unless the request says otherwise. */
export const DEFAULT_LOCK_S = 60;

const LockEndpoint = z.object({ seconds: z.number().min(1).max(86400).optional() });
const Whitelist = z.object({ func: z.array(z.string()).min(1) });

export { shutdownCommand };

const RegisterEndpoint = z.object({
  endpoint_name: z.string().min(1).max(256),
  endpoint_uuid: z.string().nullable().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  version: z.string().optional(),
  multi_tenant: z.boolean().optional(),
}).strict();
const ShareEndpoint = z.object({ users: z.array(z.string().min(1)).min(1) }).strict();

/** Loads an endpoint owned by the user, or throws the matching 4xx. */
export async function ownedEndpoint(
  deps: AppDeps,
  user: UserRecord,
  id: string,
): Promise<EndpointRecord> {
  const ep = await deps.store.getEndpoint(id);
  if (!ep) throw new HttpError(404, "endpoint_not_found", `Endpoint "${id}" was not found`, [id]);
  if (ep.ownerId !== user.id || ep.deleted) {
    if (ep.deleted && ep.ownerId === user.id) {
      throw new HttpError(410, "endpoint_deleted", `Endpoint "${id}" was deleted`, [id]);
    }
    throw new HttpError(
      403,
      "endpoint_access_forbidden",
      `Endpoint "${id}" belongs to another user`,
      [id],
    );
  }
  return ep;
}

/**
 * Loads an endpoint the user may submit to: its own, or one whose owner shared it with them.
 */
export async function usableEndpoint(
  deps: AppDeps,
  user: UserRecord,
  id: string,
): Promise<EndpointRecord> {
  const ep = await deps.store.getEndpoint(id);
  if (ep && !ep.deleted && ep.ownerId !== user.id && await deps.store.isSharedWith(id, user.id)) {
    return ep;
  }
  return await ownedEndpoint(deps, user, id);
}

function alreadyRegistered(id: string): HttpError {
  return new HttpError(
    409,
    "endpoint_already_registered",
    `Endpoint "${id}" is registered to another user`,
    [id],
  );
}

function deletedError(id: string): HttpError {
  return new HttpError(
    410,
    "endpoint_deleted",
    `Endpoint "${id}" was deleted; configure a new endpoint instead`,
    [id],
  );
}

/** Endpoint routes. */
export function endpointRoutes(deps: AppDeps): Hono<AppEnv> {
  // The endpoint named by the route's `:id`, if the caller owns it.
  const owned = (c: Context<AppEnv>) =>
    ownedEndpoint(deps, c.get("user"), requireUuid(c.req.param("id"), "endpoint"));
  return new Hono<AppEnv>()
    .post("/", async (c) => {
      const body = parseBody(
        RegisterEndpoint,
        await readJson(c.req.raw, deps.settings.maxRequestBytes),
      );
      const user = c.get("user");
      const id = body.endpoint_uuid
        ? requireUuid(body.endpoint_uuid, "endpoint")
        : crypto.randomUUID();
      const existing = await deps.store.getEndpoint(id);
      if (existing && existing.ownerId !== user.id) {
        throw alreadyRegistered(id);
      }
      if (existing?.deleted) throw deletedError(id);
      const now = Date.now() / 1000;
      if (existing && existing.lockedUntil > now) {
        const wait = Math.ceil(existing.lockedUntil - now);
        throw new HttpError(
          423,
          "endpoint_locked",
          `Endpoint "${id}" was stopped remotely and is locked for ${wait} more seconds`,
          [id, wait],
        );
      }
      // An endpoint's config may name the only functions it runs: enforced here, at submit.
      const listed = body.metadata?.["allowed_functions"];
      const allowed = Array.isArray(listed)
        ? listed.map((f) => requireUuid(f, "allowed function"))
        : undefined;
      const written = await deps.store.upsertEndpoint({
        id,
        ownerId: user.id,
        name: body.endpoint_name,
        metadata: body.metadata ?? {},
      });
      // Another user (or a delete) got there between the check above and the write.
      if (!written) {
        throw (await deps.store.getEndpoint(id))?.deleted
          ? deletedError(id)
          : alreadyRegistered(id);
      }
      if (allowed) await deps.store.replaceWhitelist(id, allowed);
      let queue: string;
      try {
        queue = await deps.broker.ensureEndpointQueue(id);
      } catch (err) {
        throw new HttpError(
          503,
          "broker_unavailable",
          `Cannot declare the task queue of endpoint "${id}": the broker is unavailable`,
          [id],
          { cause: err },
        );
      }
      log.info("Endpoint {id} ({name}) registered by {user}", {
        id,
        name: body.endpoint_name,
        user: user.name,
      });
      // One URL per broker node; `connection_url` (the first) for endpoints that read one.
      let urls = parseBrokerUrls(deps.settings.publicAmqpUrl, "public broker URL");
      if (deps.credentials) {
        try {
          const login = await deps.credentials.forEndpoint(id);
          urls = urls.map((u) => withLogin(u, login));
        } catch (err) {
          throw new HttpError(
            503,
            "broker_unavailable",
            `Cannot create broker credentials for endpoint "${id}"`,
            [id],
            { cause: err },
          );
        }
      }
      return c.json({
        endpoint_id: id,
        task_queue_info: {
          connection_url: urls[0],
          connection_urls: urls,
          exchange: TASKS_EXCHANGE,
          queue,
        },
        result_queue_info: {
          connection_url: urls[0],
          connection_urls: urls,
          exchange: RESULTS_EXCHANGE,
          queue: RESULTS_QUEUE,
          queue_publish_kwargs: {
            exchange: RESULTS_EXCHANGE,
            routing_key: resultRoutingKey(id),
            mandatory: true,
            properties: { delivery_mode: 2 },
          },
          max_result_bytes: deps.settings.maxResultBytes,
        },
      });
    })
    .get("/", async (c) => {
      const now = Date.now() / 1000;
      const eps = await deps.store.listEndpoints(c.get("user").id);
      const live = await Promise.all(eps.map((ep) => deps.store.endpointStatus(ep.id, now)));
      return c.json(eps.map((ep, i) => ({
        endpoint_id: ep.id,
        name: ep.name,
        status: live[i] ? "online" : "offline",
        created_at: ep.createdAt,
        last_registered_at: ep.lastRegisteredAt,
      })));
    })
    .delete("/:id", async (c) => {
      const ep = await owned(c);
      await deleteEndpoint(deps, ep.id);
      return c.json({ result: 302, endpoint_id: ep.id, deleted: true });
    })
    .post("/:id/lock", async (c) => {
      const ep = await owned(c);
      const body = await readJson(c.req.raw, deps.settings.maxRequestBytes, {});
      const seconds = parseBody(LockEndpoint, body).seconds ?? DEFAULT_LOCK_S;
      const until = await lockEndpoint(deps, ep.id, seconds);
      return c.json({ endpoint_id: ep.id, locked_until: until });
    })
    .get("/:id/users", async (c) => {
      const ep = await owned(c);
      return c.json({ endpoint_id: ep.id, users: await deps.store.sharedWith(ep.id) });
    })
    .post("/:id/users", async (c) => {
      const ep = await owned(c);
      const body = parseBody(
        ShareEndpoint,
        await readJson(c.req.raw, deps.settings.maxRequestBytes),
      );
      const ids: string[] = [];
      for (const name of body.users) {
        const u = await deps.store.userByName(name);
        if (!u) throw new HttpError(404, "user_not_found", `User "${name}" was not found`, [name]);
        ids.push(u.id);
      }
      await deps.store.shareEndpoint(ep.id, ids);
      return c.json({ endpoint_id: ep.id, users: await deps.store.sharedWith(ep.id) });
    })
    .delete("/:id/users/:name", async (c) => {
      const ep = await owned(c);
      const name = c.req.param("name");
      const u = await deps.store.userByName(name);
      if (!u || !await deps.store.unshareEndpoint(ep.id, u.id)) {
        throw new HttpError(
          404,
          "user_not_found",
          `User "${name}" is not in the users of endpoint "${ep.id}"`,
          [name],
        );
      }
      return c.json({ endpoint_id: ep.id, users: await deps.store.sharedWith(ep.id) });
    })
    .get("/:id/whitelist", async (c) => {
      const ep = await owned(c);
      return c.json({ endpoint_id: ep.id, functions: await deps.store.whitelist(ep.id) });
    })
    .post("/:id/whitelist", async (c) => {
      const ep = await owned(c);
      const body = parseBody(
        Whitelist,
        await readJson(c.req.raw, deps.settings.maxRequestBytes),
      );
      const ids = body.func.map((f) => requireUuid(f, "function"));
      for (const f of ids) await usableFunction(deps, c.get("user"), f);
      await deps.store.addToWhitelist(ep.id, ids);
      return c.json({ endpoint_id: ep.id, functions: await deps.store.whitelist(ep.id) });
    })
    .delete("/:id/whitelist/:fid", async (c) => {
      const ep = await owned(c);
      const fid = requireUuid(c.req.param("fid"), "function");
      if (!await deps.store.removeFromWhitelist(ep.id, fid)) {
        throw new HttpError(
          404,
          "function_not_found",
          `Function "${fid}" is not in the allow-list of endpoint "${ep.id}"`,
          [fid],
        );
      }
      return c.json({ endpoint_id: ep.id, functions: await deps.store.whitelist(ep.id) });
    })
    .get("/:id", async (c) => {
      const ep = await owned(c);
      return c.json({
        endpoint_id: ep.id,
        name: ep.name,
        metadata: ep.metadata,
        created_at: ep.createdAt,
        last_registered_at: ep.lastRegisteredAt,
      });
    })
    .get("/:id/status", async (c) => {
      const ep = await owned(c);
      const live = await deps.store.endpointStatus(ep.id, Date.now() / 1000);
      return c.json({
        status: live ? "online" : "offline",
        logs: live ? [live.state] : [],
      });
    });
}
