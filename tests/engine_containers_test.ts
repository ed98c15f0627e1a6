/**
 * Functions in containers through the whole system: SDK → service → broker → endpoint →
 * manager → a worker started by the endpoint's container runtime. The runtime here is `custom`:
 * a small script standing in for `apptainer exec IMAGE CMD` that marks the worker's environment
 * with the image name (and refuses images named `missing*`), so the tests see which image each
 * task really ran in. One worker makes the pool switch between plain and container workers.
 * `podman_test.ts` runs tasks in real containers (podman with runc).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FuncXExecutor, TaskExecutionFailed } from "../mod.ts";
import { startEndpoint } from "./harness/stack.ts";
import { fastConfig, serviceEnv } from "./_endpoint_helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Reads the image the worker says it runs in. */
const whereAmI = () => Deno.env.get("FUNCX_TEST_IMAGE") ?? "plain";

async function failure(p: PromiseLike<unknown>): Promise<TaskExecutionFailed> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof TaskExecutionFailed, String(err));
  return err;
}

Deno.test("containers: tasks run in their image's workers; clear errors otherwise", async (t) => {
  await using s = await serviceEnv();
  const runtime = join(s.dir, "fake-runtime");
  const launches = join(s.dir, "launches.log");
  await Deno.writeTextFile(
    runtime,
    `#!/bin/sh
image="$1"; shift
echo "$image" >> '${launches}'
case "$image" in missing*) echo "fake-runtime: image $image not found" >&2; exit 125;; esac
FUNCX_TEST_IMAGE="$image" exec "$@"
`,
    { mode: 0o755 },
  );
  const worker = `'${Deno.execPath()}' run --quiet -A '--config=${join(ROOT, "deno.json")}' ` +
    `'${join(ROOT, "endpoint/engine/worker_main.ts")}'`;
  const configDir = join(s.dir, "config");
  await Deno.mkdir(join(configDir, "boxed"), { recursive: true });
  await Deno.writeTextFile(
    join(configDir, "boxed", "config.yaml"),
    fastConfig(
      [
        "  container_type: custom",
        `  container_launch_cmd: "'${runtime}' {location} {worker}"`,
        `  container_worker_cmd: ${JSON.stringify(worker)}`,
      ].join("\n"),
    ),
  );
  const boxed = await startEndpoint({ service: s.service, dir: s.dir, name: "boxed", workers: 1 });
  try {
    const imageA = await s.client.registerContainer("image-a", "apptainer");
    const imageB = await s.client.registerContainer("image-b", "docker");

    await t.step("each task runs in its own image, or in a plain worker", async () => {
      await using fx = new FuncXExecutor({ endpointId: boxed.endpointId, client: s.client });
      const order: Array<string | undefined> = [
        undefined,
        imageA,
        imageA,
        imageB,
        undefined,
        imageA,
      ];
      const futures = order.map((containerId) => {
        fx.containerId = containerId;
        return fx.submit(whereAmI);
      });
      assert.deepEqual(await Promise.all(futures), [
        "plain",
        "image-a",
        "image-a",
        "image-b",
        "plain",
        "image-a",
      ]);
      const started = (await Deno.readTextFile(launches)).trim().split("\n");
      assert.ok(started.includes("image-a") && started.includes("image-b"), started.join(","));
    });

    await t.step(
      "a mixed burst of plain and container tasks all finish in the right place",
      async () => {
        await using fx = new FuncXExecutor({ endpointId: boxed.endpointId, client: s.client });
        const kinds = Array.from({ length: 40 }, (_, i) => [undefined, imageA, imageB][i % 3]);
        const futures = kinds.map((containerId) => {
          fx.containerId = containerId;
          return fx.submit(whereAmI);
        });
        const want = kinds.map((k) =>
          k === imageA ? "image-a" : k === imageB ? "image-b" : "plain"
        );
        assert.deepEqual(await Promise.all(futures), want);
      },
    );

    await t.step(
      "an image that cannot start fails its tasks with the runtime's words",
      async () => {
        const missing = await s.client.registerContainer("missing-image", "apptainer");
        await using fx = new FuncXExecutor({
          endpointId: boxed.endpointId,
          client: s.client,
          containerId: missing,
        });
        const err = await failure(fx.submit(whereAmI));
        assert.equal(err.remote.name, "ContainerUnavailable");
        assert.match(err.remote.message, /image missing-image not found/);
        // The endpoint goes on with plain workers.
        fx.containerId = undefined;
        assert.equal(await fx.submit(whereAmI), "plain");
      },
    );
  } finally {
    await boxed.process.stop();
  }

  await t.step("an endpoint without a container runtime refuses such tasks clearly", async () => {
    const plain = await startEndpoint({
      service: s.service,
      dir: s.dir,
      name: "plain",
      workers: 1,
    });
    try {
      const image = await s.client.registerContainer("image-c", "apptainer");
      await using fx = new FuncXExecutor({
        endpointId: plain.endpointId,
        client: s.client,
        containerId: image,
      });
      const err = await failure(fx.submit(whereAmI));
      assert.equal(err.remote.name, "ContainerUnavailable");
      assert.match(err.remote.message, /runs no containers: set engine\.container_type/);
      assert.match(err.remote.message, /image-c/);
      fx.containerId = undefined;
      assert.equal(await fx.submit(whereAmI), "plain");
    } finally {
      await plain.process.stop();
    }
  });
});
