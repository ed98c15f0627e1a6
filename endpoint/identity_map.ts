/**
 * The identity mapping of a multi-user endpoint: `identity_mapping.yaml` in the endpoint's
 * directory says which local account runs the tasks of each service user. The multi-user engine
 * asks it once per task (before anything starts); a user it cannot map gets a task error saying
 * why, and nothing runs. Accounts are looked up with `getent passwd`, so accounts from the site's
 * directory (LDAP, SSSD) count as well as `/etc/passwd`.
 *
 * @module
 */
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { ConfigError, describeConfigIssue, RegExpSource } from "./config.ts";

/** The file name of the mapping, in the endpoint's directory. */
export const IDENTITY_MAPPING_FILE = "identity_mapping.yaml";

const NAME = /^[a-z_][a-z0-9_.-]*\$?$/i;

/**
 * One rule: `{user, account}` (exact name), `{match, account}` (a pattern over the whole name,
 * `$1`... in the account) or `{same_name: true}`. The first rule that matches decides.
 */
export const IdentityRuleSchema = z.object({
  /** A service user name, exactly. */
  user: z.string().min(1).optional(),
  /** A regular expression that must match the whole service user name. */
  match: RegExpSource.optional(),
  /** The local account of the same name as the service user. */
  same_name: z.literal(true).optional(),
  /** The local account (with `user` or `match`). */
  account: z.string().min(1).optional(),
}).strict().superRefine((r, ctx) => {
  const kinds = [r.user, r.match, r.same_name].filter((k) => k !== undefined).length;
  if (kinds !== 1) {
    ctx.addIssue({
      code: "custom",
      path: [],
      message: 'expected exactly one of "user", "match" or "same_name"',
    });
  } else if (r.same_name === undefined && r.account === undefined) {
    ctx.addIssue({ code: "custom", path: ["account"], message: "expected a local account name" });
  } else if (r.same_name !== undefined && r.account !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["account"],
      message: '"same_name" maps to the same name; remove "account"',
    });
  } else if (r.user !== undefined && !NAME.test(r.account ?? "")) {
    ctx.addIssue({ code: "custom", path: ["account"], message: "expected a local account name" });
  }
});

/** Schema of `identity_mapping.yaml`. */
export const IdentityMappingSchema = z.object({
  /** Tasks may run as root (uid 0) when a rule maps a user there. */
  allow_root: z.boolean().default(false),
  /** Rules, tried in order. */
  rules: z.array(IdentityRuleSchema).default([]),
}).strict();

/** A validated mapping. */
export type IdentityMapping = z.infer<typeof IdentityMappingSchema>;

/** A local account, as `getent passwd` gives it. */
export interface LocalAccount {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** Where a service user goes: a local account, or the reason there is none. */
export type IdentityResolution =
  | { ok: true; account: LocalAccount }
  | { ok: false; reason: string };

/**
 * Parses the text of a mapping file; a bad field is a {@linkcode ConfigError} naming the file
 * and the field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseIdentityMapping } from "./identity_map.ts";
 * const m = parseIdentityMapping("m.yaml", "rules:\n  - user: ann\n    account: ann1\n");
 * assert.ok(m.rules.length === 1 && m.allow_root === false);
 * ```
 */
export function parseIdentityMapping(file: string, text: string): IdentityMapping {
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(file, "", `Invalid YAML in "${file}": ${(err as Error).message}`, {
      cause: err,
    });
  }
  const r = IdentityMappingSchema.safeParse(raw);
  if (!r.success) throw describeConfigIssue(file, r.error);
  return r.data;
}

/**
 * The local account name a mapping gives `user`, or `undefined` when no rule matches.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mappedAccountName, parseIdentityMapping } from "./identity_map.ts";
 * const m = parseIdentityMapping("m.yaml", 'rules:\n  - match: "(.+)@uni\\\\.edu"\n    account: "u_$1"\n');
 * assert.ok(mappedAccountName(m, "ann@uni.edu") === "u_ann");
 * assert.ok(mappedAccountName(m, "ann@other.org") === undefined);
 * ```
 */
export function mappedAccountName(mapping: IdentityMapping, user: string): string | undefined {
  for (const rule of mapping.rules) {
    if (rule.user !== undefined) {
      if (rule.user === user) return rule.account;
    } else if (rule.match !== undefined) {
      const m = new RegExp(`^(?:${rule.match})$`).exec(user);
      if (m) return (rule.account ?? "").replace(/\$(\d)/g, (_x, d) => m[Number(d)] ?? "");
    } else {
      return user;
    }
  }
  return undefined;
}

/** Looks a local account up by name (`getent passwd`); `undefined` when there is none. */
export async function lookupAccount(name: string): Promise<LocalAccount | undefined> {
  if (!NAME.test(name)) return undefined;
  const out = await new Deno.Command("getent", { args: ["passwd", name], stderr: "null" })
    .output();
  if (!out.success) return undefined;
  const line = new TextDecoder().decode(out.stdout).trim().split("\n")[0] ?? "";
  const f = line.split(":");
  if (f.length < 7 || f[0] !== name) return undefined;
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! };
}

/** The name of the account with uid `uid`, or the uid as text when it has none. */
export async function accountNameOf(uid: number): Promise<string> {
  const out = await new Deno.Command("getent", { args: ["passwd", String(uid)], stderr: "null" })
    .output().catch(() => undefined);
  const name = out?.success ? new TextDecoder().decode(out.stdout).split(":")[0] : "";
  return name || String(uid);
}

/**
 * The mapping of one endpoint, read from its file at start and again whenever the file changes.
 * A file that stops being valid while the endpoint runs does not stop it: every task is refused
 * with the file's error until it is fixed.
 */
export class IdentityMap {
  readonly file: string;
  #mapping: IdentityMapping;
  #error: ConfigError | undefined;
  #mtime: number | null;
  readonly #accounts = new Map<string, { at: number; account: LocalAccount | undefined }>();

  private constructor(file: string, mapping: IdentityMapping, mtime: number | null) {
    this.file = file;
    this.#mapping = mapping;
    this.#mtime = mtime;
  }

  /** Reads and checks `file`; throws a {@linkcode ConfigError} when it is missing or bad. */
  static async load(file: string): Promise<IdentityMap> {
    let text: string;
    let mtime: number | null;
    try {
      text = await Deno.readTextFile(file);
      mtime = (await Deno.stat(file)).mtime?.getTime() ?? null;
    } catch (err) {
      throw new ConfigError(
        file,
        "",
        `Cannot read the identity mapping "${file}": ${(err as Error).message}`,
        { cause: err },
      );
    }
    return new IdentityMap(file, parseIdentityMapping(file, text), mtime);
  }

  /** Re-reads the file when it changed since the last read. */
  async #refresh(): Promise<void> {
    let mtime: number | null;
    try {
      mtime = (await Deno.stat(this.file)).mtime?.getTime() ?? null;
    } catch (err) {
      this.#error = new ConfigError(
        this.file,
        "",
        `Cannot read the identity mapping "${this.file}": ${(err as Error).message}`,
      );
      this.#mtime = null;
      return;
    }
    if (mtime === this.#mtime && mtime !== null) return;
    this.#mtime = mtime;
    try {
      this.#mapping = parseIdentityMapping(this.file, await Deno.readTextFile(this.file));
      this.#error = undefined;
      this.#accounts.clear();
    } catch (err) {
      this.#error = err instanceof ConfigError
        ? err
        : new ConfigError(this.file, "", (err as Error).message);
    }
  }

  async #account(name: string): Promise<LocalAccount | undefined> {
    const hit = this.#accounts.get(name);
    if (hit && Date.now() - hit.at < 30_000) return hit.account;
    const account = await lookupAccount(name);
    this.#accounts.set(name, { at: Date.now(), account });
    return account;
  }

  /** The local account of service user `user`, or why there is none. */
  async resolve(user: string | undefined): Promise<IdentityResolution> {
    await this.#refresh();
    if (this.#error) {
      return { ok: false, reason: `${this.#error.message}; no task runs until it is fixed` };
    }
    if (user === undefined) {
      return {
        ok: false,
        reason: "The task does not say which service user submitted it (a service older than " +
          "multi-user endpoints sent it), so it has no local account",
      };
    }
    const name = mappedAccountName(this.#mapping, user);
    if (name === undefined) {
      return {
        ok: false,
        reason: `Service user "${user}" is not mapped to a local account: no rule of ` +
          `"${this.file}" matches it`,
      };
    }
    const account = await this.#account(name);
    if (!account) {
      return {
        ok: false,
        reason: `Service user "${user}" is mapped to local account "${name}", which does not ` +
          "exist on this host",
      };
    }
    if (account.uid === 0 && !this.#mapping.allow_root) {
      return {
        ok: false,
        reason: `Service user "${user}" is mapped to local account "${name}" (uid 0): tasks do ` +
          `not run as root unless "allow_root: true" is set in "${this.file}"`,
      };
    }
    return { ok: true, account };
  }
}
