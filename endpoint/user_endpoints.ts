/**
 * The engine of a multi-user endpoint. For each task it maps the submitting service user to a
 * local account (`identity_map.ts`), renders the user endpoint config from the administrator's
 * template and the values the user sent (`user_config_template.ts`), then hands the task to the
 * user endpoint of that user, account and values, starting one when there is none: a process
 * switched to the account with `setpriv` (uid, gid, supplementary groups), with a clean
 * environment and the account's home as working directory, that runs an engine of its own
 * (`user_endpoint_main.ts`). A user endpoint without tasks for `idle_timeout` seconds is stopped.
 * Anything that stops a task before it starts (no mapping, a bad value, a user endpoint that
 * cannot start) is the task's failure result; the daemon (broker, journal, acks) is the same as
 * for any endpoint.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { ActorName, type ResultMessage, type TaskMessage } from "../sdk/protocol/mod.ts";
import { type Engine, type EngineStatus, PoolClosed, type SubmitContext } from "./engine/mod.ts";
import { type EngineFailure, failureResult } from "./engine/failure.ts";
import { IdentityMap } from "./identity_map.ts";
import { UserConfigInvalid, UserConfigTemplate } from "./user_config_template.ts";
import { UserEndpoint, userEndpointCommand, type UserEndpointState } from "./user_endpoint.ts";
import type { EndpointConfig } from "./config.ts";
import { ConfigError } from "./config.ts";

const log = getLogger(["funcx", "endpoint", "multi-user"]);

/** One user endpoint in the multi-user endpoint's status report. */
export interface UserEndpointStatus {
  /** The local account it runs as. */
  local_user: string;
  /** Its uid. */
  uid: number;
  /** The service users whose tasks it ran. */
  users: string[];
  /** The template values it was started with. */
  values: Record<string, unknown>;
  /** Its process id. */
  pid: number | null;
  /** `starting`, `running` or `stopping`. */
  state: UserEndpointState;
  /** Tasks handed to it and not finished. */
  tasks: number;
  /** Seconds since its last task finished (0 while it has tasks). */
  idle_s: number;
}

/** Options of {@linkcode MultiUserEngine.start}. */
export interface MultiUserEngineOptions {
  /** The multi-user endpoint's config. */
  config: EndpointConfig;
  /** Its directory (the mapping, template and schema paths are relative to it). */
  endpointDir: string;
}

/** Where a task failed before reaching a user endpoint. */
class Refusal extends Error {
  readonly code: EngineFailure;
  /** The local account, when the refusal came after the mapping. */
  readonly account: string | null;
  constructor(code: EngineFailure, message: string, account: string | null) {
    super(message);
    this.code = code;
    this.account = account;
  }
}

/** A short stable tag of a service user name, for file and key names. */
function userTag(user: string): string {
  return createHash("sha256").update(user).digest("hex").slice(0, 8);
}

/** Runs each task in the user endpoint of its submitter's local account. */
export class MultiUserEngine implements Engine {
  readonly #config: EndpointConfig;
  readonly #dir: string;
  readonly #identities: IdentityMap;
  readonly #templates: UserConfigTemplate;
  readonly #command: string[];
  readonly #byKey = new Map<string, UserEndpoint>();
  /** Task id to the user endpoint that holds it. */
  readonly #where = new Map<string, UserEndpoint>();
  /** Tasks waiting for their user endpoint to start, and those of them cancelled meanwhile. */
  readonly #starting = new Set<string>();
  readonly #cancelled = new Set<string>();
  readonly #timer: ReturnType<typeof setInterval>;
  #closed = false;

  private constructor(
    options: MultiUserEngineOptions,
    identities: IdentityMap,
    templates: UserConfigTemplate,
  ) {
    this.#config = options.config;
    this.#dir = options.endpointDir;
    this.#identities = identities;
    this.#templates = templates;
    this.#command = userEndpointCommand(options.config.user_endpoints.command);
    const idleMs = options.config.user_endpoints.idle_timeout * 1000;
    this.#timer = setInterval(() => this.#reap(idleMs), Math.min(1000, idleMs / 4));
  }

  /**
   * Reads and checks the identity mapping, the template and the schema; throws a
   * {@linkcode ConfigError} naming the file and field when one is bad.
   */
  static async start(options: MultiUserEngineOptions): Promise<MultiUserEngine> {
    const u = options.config.user_endpoints;
    const at = (p: string) => join(options.endpointDir, p);
    const identities = await IdentityMap.load(at(u.identity_mapping));
    const templates = await UserConfigTemplate.load(at(u.template), at(u.schema));
    await Deno.mkdir(at("user_endpoints"), { recursive: true, mode: 0o700 });
    return new MultiUserEngine(options, identities, templates);
  }

  async submit(
    taskId: string,
    buffer: string,
    container?: string,
    context: SubmitContext = {},
  ): Promise<ResultMessage> {
    // A user endpoint that dies is a lost block: its tasks run again in a new one, up to the
    // template's max_retries_on_system_failure.
    for (let attempt = 1;; attempt++) {
      if (this.#closed) throw new PoolClosed(taskId);
      let ue: UserEndpoint;
      this.#starting.add(taskId);
      try {
        ue = await this.#userEndpointFor(taskId, context.task, context.onAccount);
      } catch (err) {
        this.#cancelled.delete(taskId);
        if (err instanceof PoolClosed) throw err;
        const code = err instanceof Refusal ? err.code : "UserEndpointFailed";
        context.onAccount?.(err instanceof Refusal ? err.account : null);
        log.warn("Task {id} refused: {err}", { id: taskId, err: (err as Error).message });
        return failureResult(taskId, code, (err as Error).message, [], ActorName.ENDPOINT);
      } finally {
        this.#starting.delete(taskId);
      }
      if (this.#cancelled.delete(taskId)) {
        return failureResult(
          taskId,
          "TaskCancelled",
          `Task "${taskId}" was cancelled while its user endpoint started`,
          [],
          ActorName.ENDPOINT,
        );
      }
      if (this.#closed) throw new PoolClosed(taskId);
      this.#where.set(taskId, ue);
      let result: ResultMessage;
      try {
        result = await ue.submit(taskId, buffer, container, context.resourceSpecification);
      } finally {
        this.#where.delete(taskId);
      }
      const lost = ue.lost.delete(taskId);
      if (!lost || attempt > ue.retries || this.#closed) {
        const total = attempt - 1 + (result.attempts ?? 1);
        if (total > 1) result.attempts = total;
        return result;
      }
      log.warn("Task {id} lost its user endpoint on attempt {n}; running it again", {
        id: taskId,
        n: attempt,
      });
    }
  }

  async #userEndpointFor(
    taskId: string,
    task: TaskMessage | undefined,
    onAccount: ((account: string | null) => void) | undefined,
  ): Promise<UserEndpoint> {
    const who = await this.#identities.resolve(task?.user);
    if (!who.ok) throw new Refusal("IdentityMappingFailed", who.reason, null);
    const account = who.account;
    let spec;
    try {
      spec = await this.#templates.render(task?.user_endpoint_config);
    } catch (err) {
      if (err instanceof UserConfigInvalid || err instanceof ConfigError) {
        throw new Refusal("UserEndpointConfigInvalid", (err as Error).message, account.name);
      }
      throw err;
    }
    // One user endpoint per service user and set of values (users mapped to one shared account
    // still get their own).
    const key = `${account.name}-${spec.valuesHash}-${userTag(task?.user ?? "")}`;
    let ue = this.#byKey.get(key);
    if (!ue || ue.state === "stopping" || ue.state === "stopped") {
      log.info("Starting a user endpoint for {user} as local account {account} ({values})", {
        user: task?.user,
        account: account.name,
        values: JSON.stringify(spec.values),
      });
      try {
        ue = new UserEndpoint(key, account, spec.values, spec.raw, {
          command: this.#command,
          env: this.#config.user_endpoints.env,
          logFile: join(this.#dir, "user_endpoints", `${key}.log`),
          timeoutS: this.#config.user_endpoints.start_timeout,
          retries: spec.engine.max_retries_on_system_failure,
        }, (gone, why) => this.#onGone(gone, why));
      } catch (err) {
        // Spawning itself failed: no home directory, no setpriv, a command that is not there.
        throw new Refusal(
          "UserEndpointFailed",
          `Cannot start the user endpoint of local account "${account.name}" (home ` +
            `"${account.home}", command "${this.#command[0]}"): ${(err as Error).message}`,
          account.name,
        );
      }
      this.#byKey.set(key, ue);
    }
    if (task?.user) ue.users.add(task.user);
    // Counted as busy from now, so the reaper does not stop it while this task waits for it.
    ue.pending.set(`starting:${taskId}`, { resolve: () => {}, reject: () => {} });
    try {
      await ue.ready;
    } catch (err) {
      throw new Refusal(
        "UserEndpointFailed",
        `Cannot start the user endpoint of local account "${account.name}": ` +
          (err as Error).message,
        account.name,
      );
    } finally {
      ue.pending.delete(`starting:${taskId}`);
    }
    onAccount?.(account.name);
    return ue;
  }

  #onGone(ue: UserEndpoint, why: string): void {
    if (this.#byKey.get(ue.key) === ue) this.#byKey.delete(ue.key);
    if (ue.pending.size > 0 && !this.#closed) {
      log.error("User endpoint {key} was lost: {why}", { key: ue.key, why });
    } else {
      log.info("User endpoint {key} stopped", { key: ue.key });
    }
    if (this.#closed) {
      for (const [id, p] of ue.pending) p.reject(new PoolClosed(id));
      ue.pending.clear();
    } else {
      ue.failAll(why);
    }
  }

  #reap(idleMs: number): void {
    const now = Date.now();
    for (const ue of this.#byKey.values()) {
      if (ue.state !== "running" || ue.pending.size > 0 || now - ue.idleSince < idleMs) continue;
      log.info("Stopping user endpoint {key}: idle for {s} s", {
        key: ue.key,
        s: Math.round((now - ue.idleSince) / 1000),
      });
      this.#byKey.delete(ue.key);
      void ue.stop(5);
    }
  }

  cancel(taskId: string): boolean {
    if (this.#starting.has(taskId)) {
      // Its user endpoint is still starting: it is not handed over once it is ready.
      this.#cancelled.add(taskId);
      return true;
    }
    return this.#where.get(taskId)?.cancel(taskId) ?? false;
  }

  /** The user endpoints, for the status report. */
  userEndpoints(): UserEndpointStatus[] {
    const now = Date.now();
    return [...this.#byKey.values()].map((ue) => ({
      local_user: ue.account.name,
      uid: ue.account.uid,
      users: [...ue.users],
      values: ue.values,
      pid: ue.pid,
      state: ue.state,
      tasks: ue.pending.size,
      idle_s: ue.pending.size > 0 ? 0 : Math.round((now - ue.idleSince) / 1000),
    }));
  }

  status(): EngineStatus & { user_endpoints: UserEndpointStatus[] } {
    const ues = this.userEndpoints();
    return {
      managers: 0,
      total_workers: 0,
      idle_workers: 0,
      pending_tasks: ues.reduce((n, u) => n + u.tasks, 0),
      provider: "multi-user",
      user_endpoints: ues,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.all([...this.#byKey.values()].map((ue) => ue.stop(10)));
    this.#byKey.clear();
  }
}
