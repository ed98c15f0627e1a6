/**
 * Containers with a real runtime: Debian's podman (rootful) with runc, configured from the site
 * config `docs/sites/podman.yaml` (loaded here with the endpoint's own loader). The image is
 * built on this machine with no registry (`harness/podman.ts`): Deno, its libraries and a marker
 * file only the image has; the worker is this project's `worker_main.ts`, the project and the
 * Deno cache bind-mounted read-only. Tasks prove where they ran: the marker, and the container
 * id in `/proc/1/cgroup`, which must be one that podman's event log says it started.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FuncXExecutor, TaskExecutionFailed } from "../mod.ts";
import { loadConfig } from "../endpoint/config.ts";
import {
  containerCommand,
  type ContainerConfig,
  containerSettings,
} from "../endpoint/engine/container.ts";
import { engineCommand } from "../endpoint/engine/command.ts";
import { WorkerPool } from "../endpoint/engine/worker_pool.ts";
import type { ResultMessage } from "../sdk/protocol/mod.ts";
import { startEndpoint } from "./harness/stack.ts";
import { buildTestImage, containerStarts, workerInImage } from "./harness/podman.ts";
import { serviceEnv, until } from "./_endpoint_helpers.ts";

const SITE_CONFIG = new URL("../docs/sites/podman.yaml", import.meta.url).pathname;

/** Where a task ran: the image's marker (null outside it) and the container id of its pid 1. */
const whereAmI = () => {
  let marker: string | null = null;
  try {
    marker = Deno.readTextFileSync("/etc/funcx-image-marker");
  } catch {
    // not in the image
  }
  const cgroup = Deno.readTextFileSync("/proc/1/cgroup");
  return {
    marker,
    container: /libpod-([0-9a-f]{64})/.exec(cgroup)?.[1] ?? null,
    runtime: Deno.env.get("container") ?? null,
  };
};

async function failure(p: PromiseLike<unknown>): Promise<TaskExecutionFailed> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof TaskExecutionFailed, String(err));
  return err;
}

/** The site's container settings, with what a worker needs in the test image. */
async function siteSettings(overrides: Partial<ContainerConfig> = {}): Promise<ContainerConfig> {
  const site = await loadConfig(SITE_CONFIG);
  const worker = await workerInImage();
  return {
    ...containerSettings(site.engine),
    container_cmd_options: `${site.engine.container_cmd_options} ${worker.mounts}`,
    container_worker_cmd: worker.command,
    ...overrides,
  };
}

Deno.test("podman site config: podman with runc, lowered ulimits, validated by the loader", async () => {
  const site = await loadConfig(SITE_CONFIG);
  assert.equal(site.engine.container_type, "podman");
  assert.equal(site.engine.container_runtime_options, "--runtime runc");
  assert.match(site.engine.container_cmd_options, /--ulimit nofile=1024:1024/);
  const cmd = containerCommand(site.engine, "localhost/py:3");
  assert.deepEqual(cmd.slice(0, 4), ["podman", "--runtime", "runc", "run"]);
  assert.deepEqual(cmd.slice(-3), ["localhost/py:3", "funcx-endpoint", "__worker"]);
});

Deno.test("podman: tasks run in a real container, warm on one manager; plain tasks do not", async (t) => {
  await using image = await buildTestImage();
  const builtAt = new Date(Date.now() - 1000);
  await using s = await serviceEnv();
  const engine = {
    ...await siteSettings(),
    init_blocks: 2,
    min_blocks: 2,
    max_blocks: 2,
    max_workers_per_node: 1,
  };
  const ep = await startEndpoint({
    service: s.service,
    dir: s.dir,
    name: "podman",
    workers: 1,
    config: { heartbeat_period: 1, engine },
  });
  try {
    const imageId = await s.client.registerContainer(image.name, "podman");
    await using fx = new FuncXExecutor({ endpointId: ep.endpointId, client: s.client });
    const inImage = (n: number) => {
      fx.containerId = imageId;
      return Promise.all(Array.from({ length: n }, () => fx.submit(whereAmI)));
    };
    let container = "";

    await t.step("tasks for the image run inside one container, started once", async () => {
      // Two waves: the second finds the first's worker warm on its manager (of two).
      const runs = [...await inImage(4), ...await inImage(4)];
      container = runs[0]!.container ?? "";
      assert.match(container, /^[0-9a-f]{64}$/);
      for (const r of runs) {
        assert.deepEqual(r, { marker: image.marker, container, runtime: "podman" });
      }
      assert.deepEqual(await containerStarts(image.name, builtAt), [container]);
    });

    await t.step("a plain task runs outside, and leaves the warm container alone", async () => {
      fx.containerId = undefined;
      assert.deepEqual(await fx.submit(whereAmI), { marker: null, container: null, runtime: null });
      const [again] = await inImage(1);
      assert.equal(again!.container, container);
      assert.deepEqual(await containerStarts(image.name, builtAt), [container]);
    });

    await t.step("a missing image fails its task with podman's words", async () => {
      const missing = await s.client.registerContainer(image.missingName, "podman");
      fx.containerId = missing;
      const err = await failure(fx.submit(whereAmI));
      assert.equal(err.remote.name, "ContainerUnavailable");
      assert.match(
        err.remote.message,
        new RegExp(`Cannot start a worker in container "${image.missingName}" with podman`),
      );
      // podman's own stderr, naming the image it could not find or pull
      assert.match(err.remote.message, /Error: .*funcx-test-\d+-[0-9a-f]+-missing:1/);
      fx.containerId = undefined;
      assert.equal((await fx.submit(whereAmI)).marker, null);
    });
  } finally {
    await ep.process.stop();
  }
});

Deno.test("podman: a dead runtime fails the task with its words; the endpoint goes on", async () => {
  await using image = await buildTestImage();
  await using s = await serviceEnv();
  const engine = await siteSettings({ container_runtime_options: "--runtime /nonexistent/runc" });
  const ep = await startEndpoint({
    service: s.service,
    dir: s.dir,
    name: "deadrt",
    workers: 1,
    config: { heartbeat_period: 1, engine: { ...engine, max_workers_per_node: 1 } },
  });
  try {
    const imageId = await s.client.registerContainer(image.name, "podman");
    await using fx = new FuncXExecutor({
      endpointId: ep.endpointId,
      client: s.client,
      containerId: imageId,
    });
    const err = await failure(fx.submit(whereAmI));
    assert.equal(err.remote.name, "ContainerUnavailable");
    assert.match(err.remote.message, new RegExp(`container "${image.name}" with podman`));
    assert.match(err.remote.message, /OCI runtime \/nonexistent\/runc/);
    fx.containerId = undefined;
    assert.deepEqual(await fx.submit(whereAmI), { marker: null, container: null, runtime: null });
  } finally {
    await ep.process.stop();
  }
});

Deno.test("worker pool: an absent runtime program fails the task naming it; plain tasks go on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-podman-pool-" });
  const results: ResultMessage[] = [];
  const settings = await siteSettings();
  const pool = await WorkerPool.start({
    workers: 1,
    command: engineCommand("worker", ["-A"]),
    logDir: join(dir, "logs"),
    onResult: (r) => results.push(r),
    containerCommand: (location) => [
      "/nonexistent/bin/podman",
      ...containerCommand(settings, location).slice(1),
    ],
  });
  try {
    pool.submit({ task_id: "t1", buffer: "unused", statuses: [], container: "localhost/x:1" });
    await until("the task's failure", () => results.length > 0, 30);
    assert.equal(results.length, 1);
    const error = results[0]!.error_details;
    assert.equal(error?.code, "ContainerUnavailable");
    assert.match(error!.user_message, /container "localhost\/x:1" with \/nonexistent\/bin\/podman/);
    assert.match(error!.user_message, /\/nonexistent\/bin\/podman.*No such file or directory/);
    // A plain worker took the place of the one that made way for the container.
    await until("a plain worker again", () => pool.idleCount === 1, 30);
    assert.deepEqual([...pool.workerKinds], [["", 1]]);
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});
