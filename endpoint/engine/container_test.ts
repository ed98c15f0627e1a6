import assert from "node:assert/strict";
import type { TaskContainer } from "../../sdk/protocol/mod.ts";
import {
  containerCommand,
  type ContainerConfig,
  containerConfigProblem,
  ContainerConfigSchema,
  containerRefusal,
  containerSettings,
  splitWords,
} from "./container.ts";
import { EngineConfigSchema } from "./engine_config.ts";

function config(fields: Partial<ContainerConfig>): ContainerConfig {
  return ContainerConfigSchema.parse(fields);
}

Deno.test("splitWords keeps quoted words whole", () => {
  assert.deepEqual(splitWords(` a  "b c" 'd e'  f `), ["a", "b c", "d e", "f"]);
  assert.deepEqual(splitWords(""), []);
});

Deno.test("containerCommand builds each runtime's command line", () => {
  assert.deepEqual(
    containerCommand(
      config({ container_type: "docker", container_cmd_options: "--gpus all" }),
      "py:3",
    ),
    [
      "docker",
      "run",
      "--rm",
      "-i",
      "--network",
      "host",
      "-e",
      "CUDA_VISIBLE_DEVICES",
      "-e",
      "ROCR_VISIBLE_DEVICES",
      "-e",
      "SYCL_DEVICE_FILTER",
      "--gpus",
      "all",
      "py:3",
      "funcx-endpoint",
      "__worker",
    ],
  );
  assert.deepEqual(
    containerCommand(config({ container_type: "singularity" }), "/x/a b.sif"),
    ["singularity", "exec", "/x/a b.sif", "funcx-endpoint", "__worker"],
  );
  assert.deepEqual(
    containerCommand(
      config({
        container_type: "custom",
        container_launch_cmd: "wrap --image={location} -- {worker}",
        container_worker_cmd: "'/opt/my deno' run -A /w.ts",
      }),
      "img",
    ),
    ["wrap", "--image=img", "--", "/opt/my deno", "run", "-A", "/w.ts"],
  );
});

Deno.test("containerCommand puts runtime options before run/exec and cmd options after", () => {
  const fields = {
    container_runtime_options: "--runtime runc --log-level error",
    container_cmd_options: "--ulimit nofile=1024:1024 -v '/a b:/c:ro'",
  };
  assert.deepEqual(containerCommand(config({ container_type: "podman", ...fields }), "img:1"), [
    "podman",
    "--runtime",
    "runc",
    "--log-level",
    "error",
    "run",
    "--rm",
    "-i",
    "--network",
    "host",
    "-e",
    "CUDA_VISIBLE_DEVICES",
    "-e",
    "ROCR_VISIBLE_DEVICES",
    "-e",
    "SYCL_DEVICE_FILTER",
    "--ulimit",
    "nofile=1024:1024",
    "-v",
    "/a b:/c:ro",
    "img:1",
    "funcx-endpoint",
    "__worker",
  ]);
  assert.deepEqual(
    containerCommand(
      config({
        container_type: "docker",
        container_runtime_options: "--host unix:///run/d.sock",
      }),
      "py:3",
    ).slice(0, 4),
    ["docker", "--host", "unix:///run/d.sock", "run"],
  );
  assert.deepEqual(
    containerCommand(
      config({
        container_type: "apptainer",
        container_runtime_options: "--quiet",
        container_cmd_options: "--bind /scratch --nv",
      }),
      "/i/py.sif",
    ),
    [
      "apptainer",
      "--quiet",
      "exec",
      "--bind",
      "/scratch",
      "--nv",
      "/i/py.sif",
      "funcx-endpoint",
      "__worker",
    ],
  );
  assert.deepEqual(
    containerCommand(
      config({ container_type: "singularity", container_runtime_options: "--silent" }),
      "/i/py.sif",
    ),
    ["singularity", "--silent", "exec", "/i/py.sif", "funcx-endpoint", "__worker"],
  );
  assert.deepEqual(
    containerCommand(
      config({
        container_type: "custom",
        container_runtime_options: "--debug",
        container_launch_cmd: "rt {runtime_options} go {options} {location} {worker}",
        container_cmd_options: "-x",
      }),
      "img",
    ),
    ["rt", "--debug", "go", "-x", "img", "funcx-endpoint", "__worker"],
  );
});

Deno.test("containerSettings keeps only the container fields", () => {
  const c = config({ container_type: "podman", container_runtime_options: "--runtime runc" });
  assert.deepEqual(containerSettings({ ...c, ...{ max_blocks: 2 } }), c);
});

Deno.test("container configs that cannot work are named", () => {
  assert.equal(containerConfigProblem(config({})), undefined);
  assert.deepEqual(
    containerConfigProblem(config({ container_type: "custom" }))?.field,
    "container_type",
  );
  assert.match(
    containerConfigProblem(config({ container_type: "custom" }))!.message,
    /container_launch_cmd/,
  );
  const noWorker = containerConfigProblem(
    config({ container_type: "docker", container_launch_cmd: "docker run {location}" }),
  );
  assert.equal(noWorker?.field, "container_launch_cmd");
  assert.match(noWorker!.message, /\{worker\}/);
  const noType = containerConfigProblem(config({ container_runtime_options: "--runtime runc" }));
  assert.equal(noType?.field, "container_type");
  assert.match(noType!.message, /container_runtime_options is set, but no runtime is/);
  const nowhere = containerConfigProblem(
    config({
      container_type: "custom",
      container_runtime_options: "--debug",
      container_launch_cmd: "rt {location} {worker}",
    }),
  );
  assert.equal(nowhere?.field, "container_launch_cmd");
  assert.match(nowhere!.message, /no \{runtime_options\}/);
  assert.throws(() => containerCommand(config({}), "img"), /runs no containers/);
  assert.throws(() => ContainerConfigSchema.parse({ container_type: "lxc" }));
});

Deno.test("container_runtime_options that are not options are refused, naming the field", () => {
  const bad = ContainerConfigSchema.safeParse({
    container_type: "podman",
    container_runtime_options: "run --ulimit nofile=1024:1024",
  });
  assert.ok(!bad.success);
  assert.deepEqual(bad.error.issues[0]?.path, ["container_runtime_options"]);
  assert.match(bad.error.issues[0]!.message, /before its "run" or "exec".*container_cmd_options/);
  assert.ok(ContainerConfigSchema.safeParse({ container_runtime_options: "  " }).success);
});

Deno.test("an engine config with a bad container field says which field", () => {
  const r = EngineConfigSchema.safeParse({ container_runtime_options: "--runtime runc" });
  assert.ok(!r.success);
  assert.deepEqual(r.error.issues[0]?.path, ["container_type"]);
  const ok = EngineConfigSchema.parse({
    container_type: "podman",
    container_runtime_options: "--runtime runc",
  });
  assert.equal(ok.container_runtime_options, "--runtime runc");
});

Deno.test("containerRefusal: docker and podman share images, as apptainer and singularity do", () => {
  const task = (type: string): TaskContainer => ({
    container_id: "c1",
    container_type: type,
    location: "img",
  });
  const podman = config({ container_type: "podman" });
  assert.equal(containerRefusal(podman, task("docker")), undefined);
  assert.equal(containerRefusal(podman, task("podman")), undefined);
  assert.match(containerRefusal(podman, task("apptainer"))!, /container runtime is podman/);
  assert.equal(
    containerRefusal(config({ container_type: "apptainer" }), task("singularity")),
    undefined,
  );
  assert.match(containerRefusal(config({}), task("docker"))!, /runs no containers/);
});
