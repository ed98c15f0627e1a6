/**
 * The endpoint's `config.yaml`: its schema, the commented template `configure` writes, and the
 * loader that turns file, environment and command-line flags (in that order of precedence, last
 * wins) into one fully-defaulted, validated {@linkcode EndpointConfig}. Everything downstream of
 * the CLI only sees that value.
 *
 * @module
 */
import { BROKER_ANSWER_DEADLINE_MS } from "../sdk/_broker_deadline.ts";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { EngineConfigSchema } from "./engine/mod.ts";

/** Schema of the `user_endpoints` section of a multi-user endpoint's `config.yaml`. */
export const UserEndpointsSchema = z.object({
  /** Maps service users to local accounts; relative to the endpoint's directory. */
  identity_mapping: z.string().min(1).default("identity_mapping.yaml"),
  /** The user endpoint config template (YAML with `{{ name }}` placeholders). */
  template: z.string().min(1).default("user_config_template.yaml"),
  /** The JSON Schema the values users send are checked against. */
  schema: z.string().min(1).default("user_config_schema.json"),
  /** Seconds a user endpoint without tasks lives on before it stops. */
  idle_timeout: z.number().positive().default(300),
  /** Seconds a user endpoint may take to start. */
  start_timeout: z.number().positive().default(60),
  /**
   * The program that runs a user endpoint (it gets the hidden `__user_endpoint` command): it
   * must be readable and runnable by every mapped account, so a site installs it in a
   * world-readable place. Default: this program (the binary itself when compiled, else this Deno
   * with `run -A` and this checkout's `cli/funcx_endpoint.ts`).
   */
  command: z.array(z.string().min(1)).min(1).nullable().default(null),
  /**
   * Environment of user endpoints, over the clean one they get (`HOME`, `USER`, `LOGNAME`,
   * `SHELL`, `PATH`); for example `DENO_DIR` of the site's install.
   */
  env: z.record(z.string(), z.string()).default({}),
}).strict();

/** Schema of `config.yaml`. Unknown keys are errors, so a typo never passes silently. */
export const EndpointConfigSchema = z.object({
  /** Name shown by the service; the directory name when unset. */
  display_name: z.string().min(1).nullable().default(null),
  /** Base address of the service. */
  funcx_service_address: z.url().default("http://127.0.0.1:8000"),
  /** Passed through to the SDK (`FUNCX_SDK_ENVIRONMENT`). */
  environment: z.string().nullable().default(null),
  /** Seconds between status reports. */
  heartbeat_period: z.number().positive().default(30),
  /** Seconds after which the service may consider the endpoint lost. */
  heartbeat_threshold: z.number().positive().default(120),
  /** Idle heartbeats (after work was done) before shutting down; 0 turns it off. */
  idle_heartbeats_soft: z.number().int().min(0).default(0),
  /** Idle heartbeats before shutting down, even if no work was ever done. */
  idle_heartbeats_hard: z.number().int().min(1).default(5760),
  /** Run in the background after `start`. */
  detach_endpoint: z.boolean().default(true),
  /** Functions this endpoint agrees to run; any when unset. */
  allowed_functions: z.array(z.uuid()).nullable().default(null),
  /**
   * Consecutive failed attempts to reach the broker after which the daemon exits (code 75);
   * `null` or `0`: never give up, keep trying for as long as the outage lasts.
   */
  max_consecutive_failures: z.number().int().min(0).nullable().default(null),
  /** Seconds: the first reconnect waits up to this long; each later one up to twice as long. */
  reconnect_delay_min: z.number().positive().default(1),
  /** Seconds: the most any reconnect waits (the cap of the exponential backoff). */
  reconnect_delay_max: z.number().positive().default(60),
  /** Unacked tasks the broker hands this endpoint at once. */
  prefetch: z.number().int().min(1).default(1000),
  /**
   * Seconds the broker may take to confirm a result or answer a queue declare; past it the
   * connection is taken as dead and replaced (what was unconfirmed is sent again).
   */
  broker_deadline: z.number().positive().default(BROKER_ANSWER_DEADLINE_MS / 1000),
  /** How tasks are run (owned by the engine). */
  engine: EngineConfigSchema.prefault({}),
  /** Port of the daemon's Prometheus metrics (`GET /metrics`); null: not served; 0: any free. */
  metrics_port: z.number().int().min(0).max(65535).nullable().default(null),
  /** Address the metrics port binds to. */
  metrics_address: z.string().min(1).default("127.0.0.1"),
  /**
   * A file that gets one line per task state change (received, running, finished) with time,
   * user, local account, function, task, endpoint and outcome, never arguments or results;
   * appended to, mode 0600. Relative to the endpoint's directory; null for none.
   */
  audit_log: z.string().min(1).nullable().default(null),
  /**
   * A multi-user endpoint: started by an administrator (root), it runs each task in a user
   * endpoint under the local account its submitter maps to (see `user_endpoints`); `engine` is
   * then unused here, the user endpoint template says how tasks run.
   */
  multi_user: z.boolean().default(false),
  /** How a multi-user endpoint starts and keeps its user endpoints. */
  user_endpoints: UserEndpointsSchema.prefault({}),
}).strict().refine((c) => c.reconnect_delay_max >= c.reconnect_delay_min, {
  message: "reconnect_delay_max must not be below reconnect_delay_min",
  path: ["reconnect_delay_max"],
});

/** The validated, fully-defaulted endpoint configuration. */
export type EndpointConfig = z.infer<typeof EndpointConfigSchema>;

/** The file or values of a config are not valid; `path` names the bad field. */
export class ConfigError extends Error {
  /** Dotted path of the first bad field, `""` for the whole file. */
  readonly path: string;
  /** The file the config came from. */
  readonly file: string;
  /** Builds the error. */
  constructor(file: string, path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
    this.file = file;
    this.path = path;
  }
}

/** Values that override the file: from the environment and from command-line flags. */
export type ConfigOverrides = Record<string, unknown>;

/** The environment variables that override config fields, as funcX reads them. */
export function envOverrides(env: Record<string, string | undefined>): ConfigOverrides {
  const o: ConfigOverrides = {};
  if (env["FUNCX_SERVICE_ADDRESS"]) o["funcx_service_address"] = env["FUNCX_SERVICE_ADDRESS"];
  if (env["FUNCX_SDK_ENVIRONMENT"]) o["environment"] = env["FUNCX_SDK_ENVIRONMENT"];
  const deadline = env["FUNCX_ENDPOINT_BROKER_DEADLINE"];
  if (deadline) o["broker_deadline"] = Number(deadline);
  return o;
}

/** A config field holding a regular expression: refused, with the reason, if it does not compile. */
export const RegExpSource = z.string().min(1).refine((p) => {
  try {
    new RegExp(p);
    return true;
  } catch {
    return false;
  }
}, "expected a valid regular expression");

/** The first issue of a failed parse of `file`, as a {@linkcode ConfigError} naming the field. */
export function describeConfigIssue(file: string, error: z.ZodError): ConfigError {
  return describeIssues(file, error);
}

function describeIssues(file: string, error: z.ZodError): ConfigError {
  const issue = error.issues[0];
  const path = issue ? issue.path.map(String).join(".") : "";
  let what = issue?.message ?? "invalid value";
  if (issue?.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => `"${[...issue.path.map(String), k].join(".")}"`);
    what = `unknown field ${keys.join(", ")}`;
    return new ConfigError(
      file,
      keys[0]?.slice(1, -1) ?? path,
      `Invalid config "${file}": ${what}`,
    );
  }
  const where = path ? `field "${path}"` : "the file";
  return new ConfigError(file, path, `Invalid config "${file}": ${where}: ${what}`);
}

/**
 * Validates a parsed config object with overrides applied on top (`engine` merged by field).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateConfig } from "./config.ts";
 * const c = validateConfig("config.yaml", { heartbeat_period: 5 });
 * assert.equal(c.heartbeat_period, 5);
 * assert.equal(c.detach_endpoint, true);
 * ```
 */
export function validateConfig(
  file: string,
  raw: unknown,
  ...overrides: ConfigOverrides[]
): EndpointConfig {
  if (raw !== null && raw !== undefined && (typeof raw !== "object" || Array.isArray(raw))) {
    throw new ConfigError(file, "", `Invalid config "${file}": expected a mapping of fields`);
  }
  // An empty YAML key (`engine:` with only comments below it) parses as null: treat it as unset.
  const merged: Record<string, unknown> = Object.fromEntries(
    Object.entries(raw as Record<string, unknown> ?? {}).filter(([, v]) => v !== null),
  );
  for (const o of overrides) {
    for (const [k, v] of Object.entries(o)) {
      if (v === undefined) continue;
      if (k === "engine" && v && typeof v === "object") {
        const base = merged["engine"];
        merged["engine"] = { ...(base && typeof base === "object" ? base : {}), ...v };
      } else {
        merged[k] = v;
      }
    }
  }
  const r = EndpointConfigSchema.safeParse(merged);
  if (!r.success) throw describeIssues(file, r.error);
  return r.data;
}

/** Reads and validates `file` (YAML) with `overrides` applied in order. */
export async function loadConfig(
  file: string,
  ...overrides: ConfigOverrides[]
): Promise<EndpointConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    throw new ConfigError(file, "", `Cannot read config "${file}": ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseConfig(file, text, ...overrides);
}

/** Parses and validates the text of a config file; `file` names it in errors. */
export function parseConfig(
  file: string,
  text: string,
  ...overrides: ConfigOverrides[]
): EndpointConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, "", `Invalid YAML in "${file}": ${(err as Error).message}`, {
      cause: err,
    });
  }
  return validateConfig(file, raw, ...overrides);
}

/**
 * Fills a user's config template for endpoint `name`: `$name` and `${name}` become the name (as
 * funcX's templates), `$$` a dollar sign. The result is checked like a config file, so a template
 * with a typo is refused before anything is written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fillConfigTemplate } from "./config.ts";
 * const text = fillConfigTemplate("site.yaml", "display_name: $name-gpu\n", "alpha");
 * assert.equal(text, "display_name: alpha-gpu\n");
 * ```
 */
export function fillConfigTemplate(file: string, template: string, name: string): string {
  const text = template.replace(/\$(\$|\{name\}|name\b)/g, (_m, what) => what === "$" ? "$" : name);
  parseConfig(file, text);
  return text;
}

/** The commented `config.yaml` that `configure` writes. */
export function configTemplate(name: string): string {
  return `# funcX endpoint "${name}". Every field is optional; the values shown are the defaults.
# Environment variables override this file, and command-line flags override both.

# Name shown by the service (default: the endpoint's directory name).
display_name: ${JSON.stringify(name)}

# Where the funcX service runs (env FUNCX_SERVICE_ADDRESS overrides it).
# funcx_service_address: http://127.0.0.1:8000

# Seconds between status reports to the service.
# heartbeat_period: 30
# heartbeat_threshold: 120

# Shut down after this many heartbeats without work, once work was done (0: never),
# and after this many idle heartbeats in any case.
# idle_heartbeats_soft: 0
# idle_heartbeats_hard: 5760

# Run in the background after "funcx-endpoint start" (false: stay in the foreground).
# detach_endpoint: true

# Only run these registered functions (default: any function of the endpoint's users).
# allowed_functions:
#   - 00000000-0000-0000-0000-000000000000

# When the broker cannot be reached the daemon keeps running its tasks, keeps their results
# on disk and retries with a jittered exponential backoff: the first wait is up to
# reconnect_delay_min seconds, each next one up to twice as long, never more than
# reconnect_delay_max. It never gives up unless max_consecutive_failures is set (then it
# exits with code 75 after that many failed attempts in a row; 0 means never).
# max_consecutive_failures: null
# reconnect_delay_min: 1
# reconnect_delay_max: 60

# Seconds the broker may take to confirm a result before the connection is taken as dead
# and replaced (the result is sent again); env FUNCX_ENDPOINT_BROKER_DEADLINE overrides it.
# broker_deadline: 30

# Serve Prometheus metrics (tasks, queues, workers, blocks, latency) at
# http://metrics_address:metrics_port/metrics (default: not served).
# metrics_port: 9102
# metrics_address: 127.0.0.1

# Append one line per task state change (received, running, finished: time, user, local
# account, function, task, outcome; never arguments or results) to this file, mode 0600.
# audit_log: audit.log

# How tasks are run.
engine:
  # Worker subprocesses per node (default: the number of CPU cores).
  # max_workers_per_node: 4

  # Where a local block's manager runs: in_process (default: inside this daemon, which starts
  # the workers itself; one process and one hop fewer per task) or process (a subprocess).
  # local_manager: in_process

  # Run a task again when its worker, manager or block was lost, up to this many times,
  # before it fails with WorkerLost/ManagerLost.
  # max_retries_on_system_failure: 0

  # Tasks a busy worker is sent beyond the one it runs while its tasks take under 10 ms
  # (taken back when one runs longer); 0 sends each task only to an idle worker.
  # worker_send_ahead: 10

  # Workers start without transparent huge pages, which make hundreds of them start slower and
  # each one larger; true lets them have them (tasks on large arrays may gain).
  # worker_huge_pages: false

  # Run functions registered with a container in that image (docker, podman, apptainer,
  # singularity or custom). The image needs funcx-endpoint on its PATH.
  # container_type: apptainer
  # container_cmd_options: "--bind /scratch"
  # The runtime's own options, before its run/exec (podman where crun cannot run: see
  # docs/sites/podman.yaml).
  # container_runtime_options: "--runtime runc"
`;
}
