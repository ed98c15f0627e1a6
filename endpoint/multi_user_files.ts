/**
 * The files `funcx-endpoint configure NAME --multi-user` writes for an administrator: a
 * `config.yaml` with `multi_user: true`, and commented starting points for the identity mapping,
 * the user endpoint config template and the schema of the values users may send.
 *
 * @module
 */
import { join } from "node:path";
import { configTemplate } from "./config.ts";
import { IDENTITY_MAPPING_FILE } from "./identity_map.ts";

/** The commented `config.yaml` of a multi-user endpoint. */
export function multiUserConfigTemplate(name: string): string {
  const single = configTemplate(name);
  const cut = single.indexOf("# How tasks are run.");
  return `${
    single.slice(0, cut)
  }# A multi-user endpoint: run it as root (or an account allowed to switch users). Each task
# runs in a user endpoint started under the local account its submitter maps to
# (${IDENTITY_MAPPING_FILE}), configured from user_config_template.yaml with the values the user
# sent, checked against user_config_schema.json.
multi_user: true

# One line per task state change (received, running, finished), appended, mode 0600.
audit_log: audit.log

user_endpoints:
  # identity_mapping: ${IDENTITY_MAPPING_FILE}
  # template: user_config_template.yaml
  # schema: user_config_schema.json
  # Seconds a user endpoint without tasks lives on.
  # idle_timeout: 300
  # Seconds a user endpoint may take to start.
  # start_timeout: 60
  # The program that runs user endpoints; every mapped account must be able to read and run
  # it (install it in a world-readable place). Default: this program.
  # command: [/opt/funcx/funcx-endpoint]
  # Environment of user endpoints, over a clean one (HOME, USER, LOGNAME, SHELL, PATH).
  # env:
  #   DENO_DIR: /opt/funcx/deno_dir
`;
}

/** The commented starting point of `identity_mapping.yaml`. */
export const IDENTITY_MAPPING_TEMPLATE =
  `# Which local account runs the tasks of each service user. Rules are tried in order; the
# first that matches decides. A user no rule matches, or one mapped to an account that does not
# exist here, gets a task error and nothing runs.
#
#   - user: alice            # this service user, exactly...
#     account: alice_h       # ...runs as this local account
#   - match: "(.+)@example\\\\.org"   # a pattern over the whole name...
#     account: "$1"          # ...and the account, with $1, $2... from its groups
#   - same_name: true        # the local account of the same name

# Tasks never run as root (uid 0) unless this is true.
allow_root: false

rules: []
`;

/** The commented starting point of `user_config_template.yaml`. */
export const USER_CONFIG_TEMPLATE =
  `# The config of each user endpoint: the "engine" section of an endpoint config, with
# {{ name }} placeholders for values users send (userEndpointConfig) and
# {{ name | default(value) }} for ones they may leave out. Each value must be allowed by
# user_config_schema.json. Different values get different user endpoints.
engine:
  max_workers_per_node: {{ workers | default(2) }}
  max_retries_on_system_failure: {{ retries | default(0) }}
  provider:
    type: local
  # provider:
  #   type: slurm
  #   partition: {{ partition | default("debug") }}
  #   account: {{ account | default(null) }}
  #   walltime: {{ walltime | default("00:30:00") }}
`;

/** The starting point of `user_config_schema.json` (a JSON Schema of simple properties). */
export const USER_CONFIG_SCHEMA = JSON.stringify(
  {
    type: "object",
    properties: {
      workers: { type: "integer", minimum: 1, maximum: 16 },
      retries: { type: "integer", minimum: 0, maximum: 3 },
    },
    additionalProperties: false,
  },
  null,
  2,
) + "\n";

/** Writes the mapping, template and schema into `dir`, never over existing files. */
export async function writeMultiUserFiles(dir: string): Promise<string[]> {
  const written: string[] = [];
  for (
    const [file, text] of [
      [IDENTITY_MAPPING_FILE, IDENTITY_MAPPING_TEMPLATE],
      ["user_config_template.yaml", USER_CONFIG_TEMPLATE],
      ["user_config_schema.json", USER_CONFIG_SCHEMA],
    ] as const
  ) {
    const path = join(dir, file);
    try {
      await Deno.writeTextFile(path, text, { createNew: true, mode: 0o600 });
      written.push(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
  }
  return written;
}
