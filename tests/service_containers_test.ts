/**
 * Containers at the service: registering and reading one, functions registered with one, and
 * the image sent with each task of such a function (read off the endpoint's queue as the
 * endpoint would). A second user can neither read the container nor register a function with it.
 */
import assert from "node:assert/strict";
import { FuncxAPIError, FuncXExecutor } from "../mod.ts";
import { startServiceOnly } from "./harness/service_only.ts";
import { takeTasks } from "./harness/endpoint_peer.ts";

function apiError(e: unknown): FuncxAPIError {
  assert.ok(e instanceof FuncxAPIError, String(e));
  return e;
}

Deno.test("service containers: register, read, functions in them, images sent with tasks", async (t) => {
  await using svc = await startServiceOnly();
  const { client } = svc;
  const reg = await client.registerEndpoint("container-ep");
  let containerId = "";

  await t.step("register and read a container", async () => {
    containerId = await client.registerContainer("/images/py.sif", "apptainer", {
      name: "py",
      description: "python tools",
    });
    assert.match(containerId, /^[0-9a-f-]{36}$/);
    assert.deepEqual(await client.getContainer(containerId, "apptainer"), {
      container_id: containerId,
      name: "py",
      description: "python tools",
      container_type: "apptainer",
      location: "/images/py.sif",
    });
    const wrongType = apiError(
      await client.getContainer(containerId, "docker").catch((e) => e),
    );
    assert.equal(wrongType.httpStatus, 404);
    assert.equal(wrongType.codeName, "container_not_found");
    assert.match(wrongType.message, /registered for apptainer/);
  });

  await t.step("bad container requests are 4xx with the error envelope", async () => {
    const badType = apiError(await client.registerContainer("img", "lxc").catch((e) => e));
    assert.equal(badType.httpStatus, 400);
    assert.match(badType.message, /type/);
    const unknown = apiError(
      await client.getContainer(crypto.randomUUID(), "docker").catch((e) => e),
    );
    assert.equal(unknown.codeName, "container_not_found");
    const notUuid = apiError(await client.getContainer("nope", "docker").catch((e) => e));
    assert.equal(notUuid.codeName, "invalid_uuid");
    const noFn = apiError(
      await client.registerFunction(() => 1, { containerId: crypto.randomUUID() }).catch((e) => e),
    );
    assert.equal(noFn.codeName, "container_not_found");
  });

  await t.step("another user cannot see or use the container", async () => {
    const other = (await svc.newUser("container-other")).client;
    const read = apiError(await other.getContainer(containerId, "apptainer").catch((e) => e));
    assert.equal(read.codeName, "container_not_found");
    const use = apiError(
      await other.registerFunction(() => 1, { containerId }).catch((e) => e),
    );
    assert.equal(use.codeName, "container_not_found");
  });

  await t.step("tasks of a container's function carry its image; others carry none", async () => {
    // The executor registers its functions with its container, and again without one.
    const fx = new FuncXExecutor({ endpointId: reg.endpoint_id, client, containerId });
    const add = (x: number) => x + 1;
    const inside = await fx.registerFunction(add);
    fx.containerId = undefined;
    const outside = await fx.registerFunction(add);
    assert.notEqual(inside, outside);
    await fx.shutdown({ wait: false });
    const inContainer = { taskId: await client.run(inside, reg.endpoint_id, { args: [1] }) };
    const plain = { taskId: await client.run(outside, reg.endpoint_id, { args: [2] }) };
    const tasks = await takeTasks(reg.task_queue_info.connection_url, reg.task_queue_info.queue, 2);
    assert.equal(tasks.length, 2);
    const byId = new Map(tasks.map((t) => [t.task_id, t] as const));
    assert.deepEqual(byId.get(inContainer.taskId!)?.container, {
      container_id: containerId,
      container_type: "apptainer",
      location: "/images/py.sif",
    });
    assert.equal(byId.get(inContainer.taskId!)?.container_id, containerId);
    assert.equal(byId.get(plain.taskId!)?.container ?? null, null);
    assert.equal(byId.get(plain.taskId!)?.container_id, null);
  });
});
