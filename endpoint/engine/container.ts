/**
 * Workers in containers. A function registered with a container runs in a worker started inside
 * that container's image by the endpoint's container runtime (`engine.container_type` in
 * `config.yaml`). The image must be able to start a worker: by default with
 * `funcx-endpoint __worker` (the endpoint binary on its `PATH`); `container_worker_cmd` says
 * otherwise (for example `deno run -A /opt/funcx/endpoint/engine/worker_main.ts`).
 * `container_runtime_options` go before the runtime's `run`/`exec` (podman's `--runtime runc`),
 * `container_cmd_options` after it (`--ulimit`, `-v`, `--bind`). The worker talks to its manager
 * over its stdin and stdout, which the runtime passes through (`-i`).
 *
 * @module
 */
import { z } from "zod";
import type { TaskContainer } from "../../sdk/protocol/mod.ts";

/** Container runtimes an endpoint can use. */
export const CONTAINER_TYPES = ["docker", "podman", "apptainer", "singularity", "custom"] as const;

/** A container runtime. */
export type ContainerType = (typeof CONTAINER_TYPES)[number];

/** Variables that pin a worker to an accelerator; passed into containers that isolate env. */
const PINNING_VARS = ["CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "SYCL_DEVICE_FILTER"];

/** Splits a command line on whitespace, keeping single- or double-quoted words whole. */
export function splitWords(text: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** Schema of the container fields of the `engine` section. */
export const ContainerConfigSchema = z.object({
  /** The runtime that starts containers; null: this endpoint runs no containers. */
  container_type: z.enum(CONTAINER_TYPES).nullable().default(null),
  /**
   * Options of the runtime itself, which go before its `run` or `exec` (podman's
   * `--runtime runc`, docker's `--host unix:///run/user/1000/docker.sock`, apptainer's
   * `--quiet`): `{runtime_options}` in a launch command.
   */
  container_runtime_options: z.string().default("").refine(
    (text) => !/^[^-]/.test(splitWords(text)[0] ?? "-"),
    {
      message: 'expected the runtime\'s own options, which start with "-" and go before its ' +
        '"run" or "exec" (such as "--runtime runc"); options of run itself (--ulimit, -v, ' +
        "--bind) go in container_cmd_options",
    },
  ),
  /** Options of the runtime's `run` or `exec` (`--bind /scratch`, `--gpus all`, `-v a:b`). */
  container_cmd_options: z.string().default(""),
  /**
   * The command that starts a worker in a container, for `custom` (and to override the others):
   * `{location}` is the image, `{runtime_options}` and `{options}` the options above, `{worker}`
   * the worker command.
   */
  container_launch_cmd: z.string().min(1).nullable().default(null),
  /** The command that starts a worker inside the image. */
  container_worker_cmd: z.string().min(1).default("funcx-endpoint __worker"),
});

/** The container fields of an engine config. */
export type ContainerConfig = z.infer<typeof ContainerConfigSchema>;

/** The container fields of `config` (an engine config, say), and nothing else. */
export function containerSettings(config: ContainerConfig): ContainerConfig {
  return {
    container_type: config.container_type,
    container_runtime_options: config.container_runtime_options,
    container_cmd_options: config.container_cmd_options,
    container_launch_cmd: config.container_launch_cmd,
    container_worker_cmd: config.container_worker_cmd,
  };
}

/** The default launch command of each runtime. */
const DEFAULT_LAUNCH: Record<Exclude<ContainerType, "custom">, string> = {
  docker: "docker {runtime_options} run --rm -i --network host {env} {options} {location} {worker}",
  podman: "podman {runtime_options} run --rm -i --network host {env} {options} {location} {worker}",
  apptainer: "apptainer {runtime_options} exec {options} {location} {worker}",
  singularity: "singularity {runtime_options} exec {options} {location} {worker}",
};

/** A container setting that cannot work: the field to fix and why. */
export interface ContainerConfigProblem {
  /** The field to fix. */
  field: keyof ContainerConfig;
  /** What is wrong with it. */
  message: string;
}

/**
 * A container config that cannot work, or `undefined`; the problem names the field and why.
 *
 * @example
 * ```ts
 * import { containerConfigProblem, ContainerConfigSchema } from "./container.ts";
 * const problem = containerConfigProblem(
 *   ContainerConfigSchema.parse({ container_runtime_options: "--runtime runc" }),
 * );
 * if (problem?.field !== "container_type") throw new Error(JSON.stringify(problem));
 * ```
 */
export function containerConfigProblem(c: ContainerConfig): ContainerConfigProblem | undefined {
  if (c.container_type === "custom" && !c.container_launch_cmd) {
    return {
      field: "container_type",
      message: 'container_type "custom" needs container_launch_cmd (with {location} and {worker})',
    };
  }
  const launch = c.container_launch_cmd;
  if (launch && !/\{worker\}/.test(launch)) {
    return {
      field: "container_launch_cmd",
      message: "container_launch_cmd must contain {worker}, where the worker command goes",
    };
  }
  if (c.container_runtime_options.trim() !== "") {
    if (c.container_type === null) {
      return {
        field: "container_type",
        message: "container_runtime_options is set, but no runtime is: set container_type " +
          "(podman, docker, apptainer, singularity or custom)",
      };
    }
    if (launch && !launch.includes("{runtime_options}")) {
      return {
        field: "container_launch_cmd",
        message: "container_runtime_options is set, but container_launch_cmd has no " +
          "{runtime_options} to put them in",
      };
    }
  }
  return undefined;
}

/**
 * The command line that starts a worker in the image at `location`.
 *
 * @example
 * ```ts
 * import { containerCommand, ContainerConfigSchema } from "./container.ts";
 * const cmd = containerCommand(
 *   ContainerConfigSchema.parse({
 *     container_type: "podman",
 *     container_runtime_options: "--runtime runc",
 *     container_cmd_options: "--ulimit nofile=1024:1024",
 *   }),
 *   "localhost/py:3",
 * );
 * const line = cmd.join(" ");
 * if (!line.startsWith("podman --runtime runc run --rm -i ")) throw new Error(line);
 * if (!line.endsWith("--ulimit nofile=1024:1024 localhost/py:3 funcx-endpoint __worker")) {
 *   throw new Error(line);
 * }
 * ```
 */
export function containerCommand(c: ContainerConfig, location: string): string[] {
  const type = c.container_type;
  if (type === null) throw new Error("This endpoint runs no containers (container_type is unset)");
  const template = c.container_launch_cmd ??
    (type === "custom" ? undefined : DEFAULT_LAUNCH[type]);
  if (!template) throw new Error(containerConfigProblem(c)?.message);
  const runtimeOptions = splitWords(c.container_runtime_options);
  const options = splitWords(c.container_cmd_options);
  const worker = splitWords(c.container_worker_cmd);
  const env = PINNING_VARS.flatMap((v) => ["-e", v]);
  return splitWords(template).flatMap((word) => {
    switch (word) {
      case "{runtime_options}":
        return runtimeOptions;
      case "{options}":
        return options;
      case "{worker}":
        return worker;
      case "{env}":
        return env;
      default:
        return [word.replaceAll("{location}", location)];
    }
  });
}

/**
 * Why this endpoint cannot run a task in `container`, or `undefined` when it can: it needs a
 * container runtime, and one that starts images of the container's type (`custom` takes any;
 * apptainer and singularity read each other's images, as docker and podman do).
 */
export function containerRefusal(
  engine: ContainerConfig,
  container: TaskContainer,
): string | undefined {
  const what = `container ${container.container_id} (${container.container_type} image ` +
    `"${container.location}")`;
  const runtime = engine.container_type;
  if (runtime === null) {
    return `The task must run in ${what}, but this endpoint runs no containers: set ` +
      "engine.container_type in its config.yaml";
  }
  // Docker and podman both run OCI images; apptainer and singularity read each other's images.
  const family = (t: string) => t === "singularity" ? "apptainer" : t === "podman" ? "docker" : t;
  if (runtime !== "custom" && family(runtime) !== family(container.container_type)) {
    return `The task must run in ${what}, but this endpoint's container runtime is ${runtime}`;
  }
  return undefined;
}
