/**
 * Container registration and lookup: `POST /v2/containers` (`{name, location, description,
 * type}` → `{container_id}`) and `GET /v2/containers/{id}/{type}` (→ `{container}`). Functions
 * registered with a `container_uuid` run in that container's image on endpoints whose
 * `engine.container_type` can start it; the service sends the image with each task.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { HttpError, requireUuid } from "../http_error.ts";
import { type AppDeps, type AppEnv, parseBody, readJson } from "../context.ts";
import type { ContainerRecord, UserRecord } from "../store.ts";

/** Container runtimes an image can be registered for. */
export const CONTAINER_TYPES = ["docker", "podman", "apptainer", "singularity", "custom"] as const;

const RegisterContainer = z.object({
  name: z.string().max(512).optional(),
  location: z.string().min(1).max(4096),
  description: z.string().max(4096).optional(),
  type: z.enum(CONTAINER_TYPES),
}).strict();

/**
 * Loads a container the user may use: their own (containers are private; a public function
 * that names someone else's container still runs in it, since the function's owner chose it).
 */
export async function usableContainer(
  deps: AppDeps,
  user: UserRecord,
  id: string,
): Promise<ContainerRecord> {
  const container = await deps.store.getContainer(id);
  if (!container || container.ownerId !== user.id) {
    throw new HttpError(404, "container_not_found", `Container "${id}" was not found`, [id]);
  }
  return container;
}

/** The JSON shape of a container. */
export function containerJson(c: ContainerRecord): Record<string, unknown> {
  return {
    container_id: c.id,
    name: c.name,
    description: c.description,
    container_type: c.type,
    location: c.location,
  };
}

/** Container routes. */
export function containerRoutes(deps: AppDeps): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .post("/", async (c) => {
      const body = parseBody(
        RegisterContainer,
        await readJson(c.req.raw, deps.settings.maxRequestBytes),
      );
      const id = crypto.randomUUID();
      await deps.store.addContainer({
        id,
        ownerId: c.get("user").id,
        name: body.name ?? "",
        description: body.description ?? "",
        type: body.type,
        location: body.location,
        createdAt: Date.now() / 1000,
      });
      return c.json({ container_id: id });
    })
    .get("/:id/:type", async (c) => {
      const id = requireUuid(c.req.param("id"), "container");
      const container = await usableContainer(deps, c.get("user"), id);
      const type = c.req.param("type");
      if (container.type !== type) {
        throw new HttpError(
          404,
          "container_not_found",
          `Container "${id}" has no ${type} image (it is registered for ${container.type})`,
          [id, type],
        );
      }
      return c.json({ container: containerJson(container) });
    });
}
