/**
 * User endpoint configs of a multi-user endpoint: the administrator writes a template
 * (`user_config_template.yaml`, YAML with `{{ name }}` and `{{ name | default(value) }}`
 * placeholders) and a JSON Schema of the values users may send (`user_config_schema.json`). For
 * each task the values the user sent (`userEndpointConfig`) are checked against the schema, then
 * put into the template, and the result is checked as an `engine` config: a wrong value is a task
 * error before anything starts. Values are put in after the template is parsed, so a value can
 * never add YAML of its own.
 *
 * Both files are read at start and again when they change; a file that became invalid refuses
 * tasks with its error (naming the file and the field) and the endpoint keeps running.
 *
 * @module
 */
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { createHash } from "node:crypto";
import { ConfigError, describeConfigIssue, RegExpSource } from "./config.ts";
import { type EngineConfig, EngineConfigSchema } from "./engine/mod.ts";

/** Schema of one property in the administrator's JSON Schema (the subset understood here). */
const PropertySchema = z.object({
  type: z.enum(["string", "integer", "number", "boolean"]),
  description: z.string().optional(),
  title: z.string().optional(),
  enum: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1).optional(),
  minimum: z.number().optional(),
  maximum: z.number().optional(),
  minLength: z.number().int().min(0).optional(),
  maxLength: z.number().int().min(0).optional(),
  pattern: RegExpSource.optional(),
}).strict();

/** Schema of `user_config_schema.json`: a JSON Schema object of simple properties. */
export const UserConfigSchemaSchema = z.object({
  $schema: z.string().optional(),
  title: z.string().optional(),
  description: z.string().optional(),
  type: z.literal("object"),
  properties: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), PropertySchema)
    .default({}),
  required: z.array(z.string()).default([]),
  additionalProperties: z.boolean().default(false),
}).strict().superRefine((s, ctx) => {
  s.required.forEach((name, i) => {
    if (!(name in s.properties)) {
      ctx.addIssue({
        code: "custom",
        path: ["required", i],
        message: `"${name}" is required but not among the properties`,
      });
    }
  });
});

/** A validated schema of user values. */
export type UserConfigSchema = z.infer<typeof UserConfigSchemaSchema>;

/** Values a user sent are not allowed by the schema, or the rendered config is not valid. */
export class UserConfigInvalid extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UserConfigInvalid";
  }
}

/**
 * Checks `values` against `schema`; returns them with nothing added. Throws
 * {@linkcode UserConfigInvalid} naming the first bad field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkUserValues, UserConfigSchemaSchema } from "./user_config_template.ts";
 * const schema = UserConfigSchemaSchema.parse({
 *   type: "object",
 *   properties: { workers: { type: "integer", minimum: 1, maximum: 8 } },
 * });
 * assert.ok(checkUserValues(schema, { workers: 2 }).workers === 2);
 * ```
 */
export function checkUserValues(
  schema: UserConfigSchema,
  values: Record<string, unknown>,
): Record<string, unknown> {
  const bad = (field: string, what: string): never => {
    throw new UserConfigInvalid(`Invalid userEndpointConfig: field "${field}": ${what}`);
  };
  for (const name of schema.required) {
    if (values[name] === undefined || values[name] === null) bad(name, "is required");
  }
  for (const [name, value] of Object.entries(values)) {
    const p = schema.properties[name];
    if (!p) {
      if (!schema.additionalProperties) {
        const known = Object.keys(schema.properties);
        bad(
          name,
          `is not allowed on this endpoint (allowed: ${
            known.length ? known.map((k) => `"${k}"`).join(", ") : "none"
          })`,
        );
      }
      continue;
    }
    if (value === null || value === undefined) continue;
    const shown = JSON.stringify(value);
    const ok = p.type === "integer"
      ? Number.isInteger(value)
      : p.type === "number"
      ? typeof value === "number" && Number.isFinite(value)
      : p.type === "string"
      ? typeof value === "string"
      : typeof value === "boolean";
    if (!ok) bad(name, `expected ${p.type === "integer" ? "an" : "a"} ${p.type}, got ${shown}`);
    if (p.enum && !p.enum.includes(value as string | number | boolean)) {
      bad(name, `${shown} is not one of ${p.enum.map((v) => JSON.stringify(v)).join(", ")}`);
    }
    if (typeof value === "number") {
      if (p.minimum !== undefined && value < p.minimum) bad(name, `${shown} is below ${p.minimum}`);
      if (p.maximum !== undefined && value > p.maximum) bad(name, `${shown} is above ${p.maximum}`);
    }
    if (typeof value === "string") {
      if (p.minLength !== undefined && value.length < p.minLength) {
        bad(name, `${shown} is shorter than ${p.minLength} characters`);
      }
      if (p.maxLength !== undefined && value.length > p.maxLength) {
        bad(name, `${shown} is longer than ${p.maxLength} characters`);
      }
      if (p.pattern !== undefined && !new RegExp(p.pattern).test(value)) {
        bad(name, `${shown} does not match the pattern ${JSON.stringify(p.pattern)}`);
      }
    }
  }
  return values;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*default\(([^)]*)\)\s*)?\}\}/g;

/** A parsed template: YAML whose placeholders are tokens, and the placeholders' defaults. */
export interface ParsedTemplate {
  /** The YAML tree with each placeholder as the string token `\u0000<n>\u0000`. */
  tree: unknown;
  /** The placeholders by token number: the value's name and its default, if any. */
  slots: Array<{ name: string; default?: unknown }>;
}

/**
 * Parses a template file's text. A default is a YAML value (`default(4)`, `default("debug")`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTemplate } from "./user_config_template.ts";
 * const t = parseTemplate("t.yaml", "engine:\n  max_workers_per_node: {{ workers | default(2) }}\n");
 * assert.ok(t.slots[0]?.name === "workers" && t.slots[0]?.default === 2);
 * ```
 */
export function parseTemplate(file: string, text: string): ParsedTemplate {
  const slots: ParsedTemplate["slots"] = [];
  let problem: string | undefined;
  // Each placeholder becomes a plain-scalar token, so unquoted `{{ x }}` is not read as YAML flow.
  // Whole-line comments go first: a placeholder in an example line is not a value.
  const uncommented = text.replace(/^[ \t]*#.*$/gm, "");
  const tokenized = uncommented.replace(
    PLACEHOLDER,
    (_m, name: string, def: string | undefined) => {
      const slot: ParsedTemplate["slots"][number] = { name };
      if (def !== undefined) {
        try {
          slot.default = parseYaml(def.trim() === "" ? "null" : def);
        } catch {
          problem ??= `the default of "{{ ${name} }}" is not a YAML value: ${def}`;
        }
      }
      slots.push(slot);
      return `FXSLOT${slots.length - 1}FXSLOT`;
    },
  );
  if (problem) throw new ConfigError(file, "", `Invalid template "${file}": ${problem}`);
  if (/\{\{|\}\}/.test(tokenized)) {
    throw new ConfigError(
      file,
      "",
      `Invalid template "${file}": a placeholder is not of the form {{ name }} or ` +
        "{{ name | default(value) }}",
    );
  }
  let tree: unknown;
  try {
    tree = parseYaml(tokenized) ?? {};
  } catch (err) {
    throw new ConfigError(
      file,
      "",
      `Invalid YAML in template "${file}": ${(err as Error).message}`,
    );
  }
  return { tree, slots };
}

const TOKEN = /FXSLOT(\d+)FXSLOT/g;

/**
 * The template's tree with `values` put in: a string that is one placeholder becomes the value
 * itself (a number stays a number); a placeholder inside other text becomes the value's text.
 * A placeholder without a value or a default is an error.
 */
export function fillTemplate(
  file: string,
  template: ParsedTemplate,
  values: Record<string, unknown>,
): unknown {
  const valueOf = (n: number): unknown => {
    const slot = template.slots[n]!;
    const v = values[slot.name] ?? slot.default;
    if (v === undefined) {
      throw new UserConfigInvalid(
        `Invalid userEndpointConfig: field "${slot.name}": is required by the template ` +
          `"${file}" (it has no default)`,
      );
    }
    return v;
  };
  const walk = (node: unknown): unknown => {
    if (typeof node === "string") {
      const whole = /^FXSLOT(\d+)FXSLOT$/.exec(node);
      if (whole) return valueOf(Number(whole[1]));
      return node.replace(TOKEN, (_m, n) => String(valueOf(Number(n))));
    }
    if (Array.isArray(node)) return node.map(walk);
    if (node && typeof node === "object") {
      return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v)]));
    }
    return node;
  };
  return walk(template.tree);
}

/** Schema of a rendered user endpoint config. */
export const UserEndpointConfigSchema = z.object({
  /** How the user endpoint runs tasks (the `engine` section of an endpoint config). */
  engine: EngineConfigSchema.prefault({}),
}).strict();

/** What a rendered template gives a user endpoint. */
export interface UserEndpointSpec {
  /** The engine config (validated). */
  engine: EngineConfig;
  /** The engine config as rendered, to hand to the user endpoint. */
  raw: Record<string, unknown>;
  /** The values used (defaults included): one user endpoint per account and values. */
  values: Record<string, unknown>;
  /** A short hash of the values, part of the user endpoint's key. */
  valuesHash: string;
}

async function readIf(path: string): Promise<{ text: string; mtime: number | null } | undefined> {
  try {
    const text = await Deno.readTextFile(path);
    return { text, mtime: (await Deno.stat(path)).mtime?.getTime() ?? null };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new ConfigError(path, "", `Cannot read "${path}": ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * The template and schema of a multi-user endpoint, read at start and again when they change.
 * Without a template file, user endpoints get the default engine config; without a schema file,
 * no values are accepted.
 */
export class UserConfigTemplate {
  readonly templateFile: string;
  readonly schemaFile: string;
  #template: ParsedTemplate | undefined;
  #schema: UserConfigSchema | undefined;
  #error: ConfigError | undefined;
  #stamp = "";

  private constructor(templateFile: string, schemaFile: string) {
    this.templateFile = templateFile;
    this.schemaFile = schemaFile;
  }

  /** Reads and checks both files; throws a {@linkcode ConfigError} when one is bad. */
  static async load(templateFile: string, schemaFile: string): Promise<UserConfigTemplate> {
    const t = new UserConfigTemplate(templateFile, schemaFile);
    await t.#refresh();
    if (t.#error) throw t.#error;
    return t;
  }

  async #refresh(): Promise<void> {
    try {
      const [tpl, sch] = await Promise.all([readIf(this.templateFile), readIf(this.schemaFile)]);
      const stamp = `${tpl?.mtime}:${tpl?.text.length}:${sch?.mtime}:${sch?.text.length}`;
      if (stamp === this.#stamp) return;
      this.#stamp = stamp;
      this.#template = tpl ? parseTemplate(this.templateFile, tpl.text) : undefined;
      if (sch) {
        let raw: unknown;
        try {
          raw = JSON.parse(sch.text);
        } catch (err) {
          throw new ConfigError(
            this.schemaFile,
            "",
            `Invalid JSON in "${this.schemaFile}": ${(err as Error).message}`,
          );
        }
        const r = UserConfigSchemaSchema.safeParse(raw);
        if (!r.success) throw describeConfigIssue(this.schemaFile, r.error);
        this.#schema = r.data;
      } else {
        this.#schema = undefined;
      }
      // With defaults for every value, the template alone must give a valid config.
      if (this.#template?.slots.every((s) => s.default !== undefined)) {
        this.#render({}, this.#template, this.#schema, true);
      }
      this.#error = undefined;
    } catch (err) {
      this.#stamp = "";
      this.#error = err instanceof ConfigError
        ? err
        : new ConfigError(this.templateFile, "", (err as Error).message);
    }
  }

  #render(
    sent: Record<string, unknown>,
    template: ParsedTemplate | undefined,
    schema: UserConfigSchema | undefined,
    checkingFiles = false,
  ): UserEndpointSpec {
    if (Object.keys(sent).length > 0) {
      if (!schema) {
        throw new UserConfigInvalid(
          `Invalid userEndpointConfig: this endpoint accepts no values (its administrator ` +
            `wrote no schema "${this.schemaFile}")`,
        );
      }
      checkUserValues(schema, sent);
    }
    const values: Record<string, unknown> = {};
    for (const slot of template?.slots ?? []) {
      const v = sent[slot.name] ?? slot.default;
      if (v !== undefined) values[slot.name] = v;
    }
    if (schema && !checkingFiles) checkUserValues(schema, values);
    const tree = template ? fillTemplate(this.templateFile, template, values) : {};
    const r = UserEndpointConfigSchema.safeParse(tree ?? {});
    if (!r.success) {
      const err = describeConfigIssue(this.templateFile, r.error);
      if (checkingFiles) throw err;
      throw new UserConfigInvalid(
        `The user endpoint config rendered from these values is not valid: ${err.message}`,
      );
    }
    const raw = (tree as { engine?: Record<string, unknown> } | null)?.engine ?? {};
    const canonical = JSON.stringify(Object.keys(values).sort().map((k) => [k, values[k]]));
    return {
      engine: r.data.engine,
      raw,
      values,
      valuesHash: createHash("sha256").update(canonical).digest("hex").slice(0, 12),
    };
  }

  /**
   * The user endpoint config for the values a user sent; throws {@linkcode UserConfigInvalid}
   * (a bad value) or {@linkcode ConfigError} (a bad file).
   */
  async render(sent: Record<string, unknown> | undefined): Promise<UserEndpointSpec> {
    await this.#refresh();
    if (this.#error) throw this.#error;
    return this.#render(sent ?? {}, this.#template, this.#schema);
  }
}
