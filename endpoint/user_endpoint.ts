/**
 * One user endpoint of a multi-user endpoint: a process switched to a local account with
 * `setpriv` (uid, gid, supplementary groups), with a clean environment and the account's home as
 * working directory, that runs an engine of its own (`user_endpoint_main.ts`). It speaks frames
 * on its stdin and stdout (`start`, then `ready` from it with the uid and gid it runs as; `task`,
 * `cancel` and `shutdown` to it; `result`, `closed` and `fatal` from it), keeps its stderr in a
 * log file, and fails the tasks it held when it dies. The {@linkcode MultiUserEngine} decides
 * which user endpoint runs a task, and when one starts and stops.
 *
 * @module
 */
import { ActorName, type ResultMessage } from "../sdk/protocol/mod.ts";
import type { ResourceSpecificationWire } from "../sdk/protocol/resource_specification.ts";
import { PoolClosed } from "./engine/mod.ts";
import { selfCommand } from "./engine/command.ts";
import { failureResult } from "./engine/failure.ts";
import { FrameWriter, readFrames } from "./engine/frames.ts";
import type { LocalAccount } from "./identity_map.ts";
import {
  type FromUserEndpoint,
  type ToUserEndpoint,
  USER_ENDPOINT_PROTOCOL_VERSION,
} from "./user_endpoint_protocol.ts";

/** Lifecycle of one user endpoint. */
export type UserEndpointState = "starting" | "running" | "stopping" | "stopped";

interface Pending {
  resolve: (r: ResultMessage) => void;
  reject: (e: Error) => void;
}

/**
 * The command that runs a user endpoint: the configured one, else this very program (the binary
 * itself when compiled; else this Deno running this checkout's CLI).
 */
export function userEndpointCommand(configured: readonly string[] | null): string[] {
  return [...(configured ?? selfCommand().argv), "__user_endpoint"];
}

/** One user endpoint process. */
export class UserEndpoint {
  readonly key: string;
  readonly account: LocalAccount;
  readonly values: Record<string, unknown>;
  readonly users = new Set<string>();
  readonly pending = new Map<string, Pending>();
  /** Tasks failed because this process died (they may run again elsewhere). */
  readonly lost = new Set<string>();
  /** Times a task lost with it may run again (the template's `max_retries_on_system_failure`). */
  readonly retries: number;
  state: UserEndpointState = "starting";
  idleSince = Date.now();
  readonly #child: Deno.ChildProcess;
  readonly #writer: FrameWriter<ToUserEndpoint>;
  readonly ready: Promise<void>;
  readonly exited: Promise<Deno.CommandStatus>;
  readonly #logFile: string;
  #stderrTail = "";

  constructor(
    key: string,
    account: LocalAccount,
    values: Record<string, unknown>,
    engine: Record<string, unknown>,
    options: {
      command: string[];
      env: Record<string, string>;
      logFile: string;
      timeoutS: number;
      retries: number;
    },
    onGone: (ue: UserEndpoint, why: string) => void,
  ) {
    this.key = key;
    this.retries = options.retries;
    this.account = account;
    this.values = values;
    this.#logFile = options.logFile;
    const sameUser = Deno.uid() === account.uid;
    // A clean environment: nothing of the administrator's leaks to the user's processes.
    const env: Record<string, string> = {
      HOME: account.home,
      USER: account.name,
      LOGNAME: account.name,
      SHELL: account.shell || "/bin/sh",
      PATH: "/usr/local/bin:/usr/bin:/bin",
      LANG: "C.UTF-8",
      ...options.env,
    };
    const switchTo = sameUser ? [] : [
      "setpriv",
      `--reuid=${account.uid}`,
      `--regid=${account.gid}`,
      "--init-groups",
      "--",
    ];
    const [program, ...args] = [...switchTo, ...options.command];
    this.#child = new Deno.Command(program!, {
      args,
      env,
      clearEnv: true,
      cwd: account.home,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.exited = this.#child.status;
    void this.#keepLog(this.#child.stderr);
    this.#writer = new FrameWriter<ToUserEndpoint>(this.#child.stdin);
    this.#writer.send({
      type: "start",
      protocol: USER_ENDPOINT_PROTOCOL_VERSION,
      engine,
      label: key,
    });
    const ready = Promise.withResolvers<void>();
    this.ready = ready.promise;
    const timer = setTimeout(
      () => ready.reject(new Error(`it was not ready within ${options.timeoutS} s`)),
      options.timeoutS * 1000,
    );
    void this.#pump(ready, timer, account, onGone);
    this.ready.catch(() => this.kill());
  }

  /** Reads its frames until it exits; then fails or returns what it held. */
  async #pump(
    ready: PromiseWithResolvers<void>,
    timer: ReturnType<typeof setTimeout>,
    account: LocalAccount,
    onGone: (ue: UserEndpoint, why: string) => void,
  ): Promise<void> {
    let why = "it exited";
    try {
      for await (const msg of readFrames<FromUserEndpoint>(this.#child.stdout)) {
        if (msg.type === "ready") {
          if (msg.protocol !== USER_ENDPOINT_PROTOCOL_VERSION) {
            ready.reject(new Error(`it speaks protocol ${msg.protocol}`));
            break;
          }
          if (msg.uid !== account.uid || msg.gid !== account.gid) {
            ready.reject(
              new Error(`it runs as uid ${msg.uid}, gid ${msg.gid}, not as "${account.name}"`),
            );
            break;
          }
          this.state = "running";
          ready.resolve();
        } else if (msg.type === "fatal") {
          ready.reject(new Error(msg.message));
          why = msg.message;
        } else if (msg.type === "result") {
          this.#settle(msg.result.task_id)?.resolve(msg.result);
        } else if (msg.type === "closed") {
          this.#settle(msg.task_id)?.reject(new PoolClosed(msg.task_id));
        }
      }
    } catch (err) {
      why = `its output could not be read (${(err as Error).message})`;
    }
    clearTimeout(timer);
    // Whatever it did not answer for, it never will: stop it for good.
    this.kill();
    const status = await this.exited;
    if (this.state !== "stopping") {
      why = `${why} (exit code ${status.code}${status.signal ? `, ${status.signal}` : ""})`;
    }
    ready.reject(new Error(`${why}${this.#tail()}`));
    this.state = "stopped";
    onGone(this, why);
  }

  async #keepLog(stream: ReadableStream<Uint8Array>): Promise<void> {
    const file = await Deno.open(this.#logFile, { append: true, create: true, mode: 0o600 })
      .catch(() => undefined);
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      this.#stderrTail = (this.#stderrTail + dec.decode(chunk)).slice(-2000);
      await file?.write(chunk).catch(() => {});
    }
    file?.close();
  }

  #tail(): string {
    const t = this.#stderrTail.trim().split("\n").slice(-5).join("\n");
    return t ? `; its log "${this.#logFile}" ends with:\n${t}` : "";
  }

  #settle(taskId: string): Pending | undefined {
    const p = this.pending.get(taskId);
    this.pending.delete(taskId);
    if (this.pending.size === 0) this.idleSince = Date.now();
    return p;
  }

  get pid(): number {
    return this.#child.pid;
  }

  submit(
    taskId: string,
    buffer: string,
    container?: string,
    spec?: ResourceSpecificationWire,
  ): Promise<ResultMessage> {
    const { promise, resolve, reject } = Promise.withResolvers<ResultMessage>();
    this.pending.set(taskId, { resolve, reject });
    this.#writer.send({
      type: "task",
      task_id: taskId,
      buffer,
      ...(container === undefined ? {} : { container }),
      ...(spec === undefined ? {} : { resource_specification: spec }),
    });
    return promise;
  }

  cancel(taskId: string): boolean {
    if (!this.pending.has(taskId)) return false;
    this.#writer.send({ type: "cancel", task_id: taskId });
    return true;
  }

  /** Asks it to stop (its engine closes, unfinished tasks come back as `closed`). */
  async stop(graceS: number): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopping";
    this.#writer.send({ type: "shutdown" });
    await this.#writer.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, graceS * 1000)));
    await Promise.race([this.exited, late]);
    clearTimeout(timer);
    this.kill();
    await this.exited;
  }

  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // gone
    }
  }

  /** Fails what it still holds (its process is gone). */
  failAll(why: string): void {
    for (const [taskId, p] of this.pending) {
      this.lost.add(taskId);
      p.resolve(failureResult(
        taskId,
        "ManagerLost",
        `The user endpoint of local account "${this.account.name}" was lost while running ` +
          `task "${taskId}": ${why}`,
        [],
        ActorName.ENDPOINT,
      ));
    }
    this.pending.clear();
  }
}
