/**
 * Function registration and lookup: `POST /v2/functions`, `GET /v2/functions` (the user's own,
 * newest first, without their code), `GET /v2/functions/{id}`. The code is
 * kept as the packed function buffer the SDK sent; the service prepends it to each task payload.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { deserializeFunction, unpackBuffers } from "../../sdk/protocol/mod.ts";
import { HttpError, requireUuid } from "../http_error.ts";
import { type AppDeps, type AppEnv, parseBody, readJson } from "../context.ts";
import type { FunctionRecord, UserRecord } from "../store.ts";
import { usableContainer } from "./containers.ts";

const RegisterFunction = z.object({
  function_name: z.string().max(512),
  function_code: z.string().min(1),
  description: z.string().max(4096).optional(),
  public: z.boolean().optional(),
  container_uuid: z.string().nullable().optional(),
  entry_point: z.string().optional(),
  group: z.string().nullable().optional(),
  // Sent by funcX 1.0 SDKs; accepted and ignored (the source travels in function_code).
  function_source: z.string().optional(),
  searchable: z.boolean().optional(),
}).strict();

/** Loads a function the user may run, or throws the matching 4xx. */
export async function usableFunction(
  deps: AppDeps,
  user: UserRecord,
  id: string,
): Promise<FunctionRecord> {
  const fn = await deps.store.getFunction(id);
  if (!fn) throw new HttpError(404, "function_not_found", `Function "${id}" was not found`, [id]);
  if (fn.ownerId !== user.id && !fn.public) {
    throw new HttpError(
      403,
      "function_access_forbidden",
      `Function "${id}" is private to its owner`,
      [id],
    );
  }
  return fn;
}

/** Function routes. */
export function functionRoutes(deps: AppDeps): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .post("/", async (c) => {
      const body = parseBody(
        RegisterFunction,
        await readJson(c.req.raw, deps.settings.maxRequestBytes),
      );
      // The code must be one packed function-source buffer; reject anything else now rather
      // than failing every task later on the endpoint.
      try {
        const parts = unpackBuffers(body.function_code);
        if (parts.length !== 1) throw new Error(`expected 1 packed buffer, got ${parts.length}`);
        deserializeFunction(parts[0]!);
      } catch (err) {
        throw new HttpError(
          400,
          "bad_request",
          `Invalid request field "function_code": ${(err as Error).message}`,
          ["function_code"],
        );
      }
      const containerId = body.container_uuid
        ? (await usableContainer(
          deps,
          c.get("user"),
          requireUuid(body.container_uuid, "container"),
        )).id
        : null;
      const id = crypto.randomUUID();
      await deps.store.addFunction({
        id,
        ownerId: c.get("user").id,
        name: body.function_name,
        code: body.function_code,
        description: body.description ?? "",
        public: body.public ?? false,
        containerId,
        createdAt: Date.now() / 1000,
      });
      return c.json({ function_uuid: id });
    })
    .get("/", async (c) => {
      const raw = c.req.query("limit") ?? "100";
      const limit = Number(raw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        throw new HttpError(
          400,
          "bad_request",
          `Invalid query parameter "limit": "${raw}" is not a whole number from 1 to 1000`,
          ["limit"],
        );
      }
      const fns = await deps.store.listFunctions(c.get("user").id, limit);
      return c.json({
        functions: fns.map((fn) => ({
          function_uuid: fn.id,
          function_name: fn.name,
          description: fn.description,
          public: fn.public,
          container_uuid: fn.containerId,
          created_at: fn.createdAt,
        })),
      });
    })
    .get("/:id", async (c) => {
      const fn = await usableFunction(
        deps,
        c.get("user"),
        requireUuid(c.req.param("id"), "function"),
      );
      return c.json({
        function_uuid: fn.id,
        function_name: fn.name,
        function_code: fn.code,
        description: fn.description,
        public: fn.public,
        container_uuid: fn.containerId,
      });
    });
}
