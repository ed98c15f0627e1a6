import assert from "node:assert/strict";
import {
  containerCommand,
  type ContainerConfig,
  containerConfigProblem,
  ContainerConfigSchema,
  splitWords,
} from "./container.ts";

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

Deno.test("container configs that cannot work are named", () => {
  assert.equal(containerConfigProblem(config({})), undefined);
  assert.match(
    containerConfigProblem(config({ container_type: "custom" }))!,
    /container_launch_cmd/,
  );
  assert.match(
    containerConfigProblem(
      config({ container_type: "docker", container_launch_cmd: "docker run {location}" }),
    )!,
    /\{worker\}/,
  );
  assert.throws(() => containerCommand(config({}), "img"), /runs no containers/);
  assert.throws(() => ContainerConfigSchema.parse({ container_type: "lxc" }));
});
