/**
 * Workers in containers. A function registered with a container runs in a worker started inside
 * that container's image by the endpoint's container runtime (`engine.container_type` in
 * `config.yaml`). The image must be able to start a worker: by default with
 * `funcx-endpoint __worker` (the endpoint binary on its `PATH`); `container_worker_cmd` says
 * otherwise (for example `deno run -A /opt/funcx/endpoint/engine/worker_main.ts`).
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
  /** Extra options for the runtime (`--bind /scratch`, `--gpus all`, ...). */
  container_cmd_options: z.string().default(""),
  /**
   * The command that starts a worker in a container, for `custom` (and to override the others):
   * `{location}` is the image, `{options}` the options, `{worker}` the worker command.
   */
  container_launch_cmd: z.string().min(1).nullable().default(null),
  /** The command that starts a worker inside the image. */
  container_worker_cmd: z.string().min(1).default("funcx-endpoint __worker"),
});

/** The container fields of an engine config. */
export type ContainerConfig = z.infer<typeof ContainerConfigSchema>;

/** The default launch command of each runtime. */
const DEFAULT_LAUNCH: Record<Exclude<ContainerType, "custom">, string> = {
  docker: "docker run --rm -i --network host {env} {options} {location} {worker}",
  podman: "podman run --rm -i --network host {env} {options} {location} {worker}",
  apptainer: "apptainer exec {options} {location} {worker}",
  singularity: "singularity exec {options} {location} {worker}",
};

/** A container config that cannot work; the message says which field and why. */
export function containerConfigProblem(c: ContainerConfig): string | undefined {
  if (c.container_type === "custom" && !c.container_launch_cmd) {
    return 'container_type "custom" needs container_launch_cmd (with {location} and {worker})';
  }
  const launch = c.container_launch_cmd;
  if (launch && !/\{worker\}/.test(launch)) {
    return "container_launch_cmd must contain {worker}, where the worker command goes";
  }
  return undefined;
}

/**
 * The command line that starts a worker in the image at `location`.
 *
 * @example
 * ```ts
 * import { containerCommand } from "./container.ts";
 * const cmd = containerCommand(
 *   {
 *     container_type: "apptainer",
 *     container_cmd_options: "--bind /scratch",
 *     container_launch_cmd: null,
 *     container_worker_cmd: "funcx-endpoint __worker",
 *   },
 *   "/images/py.sif",
 * );
 * console.assert(cmd.join(" ") === "apptainer exec --bind /scratch /images/py.sif funcx-endpoint __worker");
 * ```
 */
export function containerCommand(c: ContainerConfig, location: string): string[] {
  const type = c.container_type;
  if (type === null) throw new Error("This endpoint runs no containers (container_type is unset)");
  const template = c.container_launch_cmd ??
    (type === "custom" ? undefined : DEFAULT_LAUNCH[type]);
  if (!template) throw new Error(containerConfigProblem(c));
  const options = splitWords(c.container_cmd_options);
  const worker = splitWords(c.container_worker_cmd);
  const env = PINNING_VARS.flatMap((v) => ["-e", v]);
  return splitWords(template).flatMap((word) => {
    switch (word) {
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
 * apptainer and singularity read each other's images).
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
  const family = (t: string) => t === "singularity" ? "apptainer" : t;
  if (runtime !== "custom" && family(runtime) !== family(container.container_type)) {
    return `The task must run in ${what}, but this endpoint's container runtime is ${runtime}`;
  }
  return undefined;
}
