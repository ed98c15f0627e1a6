/**
 * The dashboard's actions, each a form posted with the session's CSRF token: cancel a task
 * (`POST /tasks/{id}/cancel`) or a task group's unfinished tasks (`POST /groups/{id}/cancel`);
 * lock (`POST /endpoints/{id}/lock`, `seconds` from the form), unlock
 * (`POST /endpoints/{id}/unlock`) or delete (`POST /endpoints/{id}/delete`) an endpoint. Only the
 * owner can: anything else is "not found", and changes nothing. Each answers with a redirect to
 * the page it was sent from (post, redirect, get), which says what was done.
 *
 * @module
 */
import type { Context } from "hono";
import { isTerminalState } from "../../sdk/protocol/mod.ts";
import { isUuid } from "../http_error.ts";
import type { AppEnv } from "../context.ts";
import type { Session } from "../session.ts";
import {
  type ActionDeps,
  cancelTasks,
  deleteEndpoint,
  lockEndpoint,
  unlockEndpoint,
} from "../operator_actions.ts";
import { type DONE_NOTICES, notFound } from "./_views.ts";
import { statusesOf } from "./_search.ts";

/** An action of a signed-in user whose form passed the CSRF check. */
export type ActionHandler = (
  deps: ActionDeps,
  c: Context<AppEnv>,
  s: Session,
  form: URLSearchParams,
) => Promise<Response>;

/** Lock durations the endpoint page offers, in seconds. */
export const LOCK_CHOICES: ReadonlyArray<readonly [number, string]> = [
  [600, "10 minutes"],
  [3600, "1 hour"],
  [86400, "1 day"],
];

function see(c: Context<AppEnv>, path: string, done: keyof typeof DONE_NOTICES): Response {
  return c.redirect(`${path}?done=${done}`, 303);
}

/** Tasks a group cancel reads from the store at once. */
const CANCEL_BATCH = 1000;

/** `POST /tasks/{id}/cancel`. */
export const cancelTaskAction: ActionHandler = async (deps, c, s) => {
  const id = (c.req.param("id") ?? "").toLowerCase();
  const t = isUuid(id) ? await deps.store.getTask(id) : undefined;
  if (!t || t.ownerId !== s.user.id) return notFound(s, "task");
  if (isTerminalState(t.status)) return see(c, `/tasks/${t.id}`, "task-finished");
  await cancelTasks(deps, [t]);
  return see(c, `/tasks/${t.id}`, "task-cancelled");
};

/** `POST /groups/{id}/cancel`: every task of the group that has not finished. */
export const cancelGroupAction: ActionHandler = async (deps, c, s) => {
  const id = (c.req.param("id") ?? "").toLowerCase();
  if (!isUuid(id) || await deps.store.taskGroupOwner(id) !== s.user.id) {
    return notFound(s, "task group");
  }
  const unfinished = [...statusesOf("waiting"), ...statusesOf("running")];
  // Cancelled tasks leave the filter, so the first page is always the next batch.
  for (let round = 0; round < 1000; round++) {
    const { items } = await deps.store.searchTasks(s.user.id, {
      groupId: id,
      statuses: unfinished,
    }, { limit: CANCEL_BATCH, offset: 0, oldestFirst: true });
    if (items.length === 0) break;
    await cancelTasks(deps, items);
  }
  return see(c, `/groups/${id}`, "group-cancelled");
};

/** The owner's endpoint named by the address, or undefined. */
async function ownEndpoint(deps: ActionDeps, c: Context<AppEnv>, s: Session) {
  const id = (c.req.param("id") ?? "").toLowerCase();
  const ep = isUuid(id) ? await deps.store.getEndpoint(id) : undefined;
  return ep && ep.ownerId === s.user.id && !ep.deleted ? ep : undefined;
}

/** `POST /endpoints/{id}/lock` with `seconds` (one of {@linkcode LOCK_CHOICES}). */
export const lockEndpointAction: ActionHandler = async (deps, c, s, form) => {
  const ep = await ownEndpoint(deps, c, s);
  if (!ep) return notFound(s, "endpoint");
  const seconds = Number(form.get("seconds") ?? "3600");
  const allowed = LOCK_CHOICES.some(([n]) => n === seconds) ? seconds : 3600;
  await lockEndpoint(deps, ep.id, allowed);
  return see(c, `/endpoints/${ep.id}`, "endpoint-locked");
};

/** `POST /endpoints/{id}/unlock`. */
export const unlockEndpointAction: ActionHandler = async (deps, c, s) => {
  const ep = await ownEndpoint(deps, c, s);
  if (!ep) return notFound(s, "endpoint");
  await unlockEndpoint(deps, ep.id);
  return see(c, `/endpoints/${ep.id}`, "endpoint-unlocked");
};

/** `POST /endpoints/{id}/delete`. */
export const deleteEndpointAction: ActionHandler = async (deps, c, s) => {
  const ep = await ownEndpoint(deps, c, s);
  if (!ep) return notFound(s, "endpoint");
  await deleteEndpoint(deps, ep.id);
  return see(c, "/", "endpoint-deleted");
};
