/**
 * A chaos run: tasks of one task group go through the real system (see `chaos_stack.ts`) in
 * waves, one wave per phase, while the phase hurts one part of it (see `phases.ts`). Each phase
 * is checked on its own once its wave has settled, and the whole run at the end:
 *
 * - every future settles, and none twice (each delivery to a future is counted);
 * - a task held by a killed worker or manager fails with `WorkerLost` or `ManagerLost`, and a
 *   task fails so only if every run of it (its lines in the side-effect file) was on a killed
 *   process; every other task returns its own number;
 * - no future is settled by a transport error (stream lost, service unreachable, ...);
 * - the task group holds exactly the tasks the service accepted;
 * - a task ran more than once only if it was in flight when the endpoint daemon was killed.
 *
 * @module
 */
import type { FuncXFuture } from "../../mod.ts";
import { FuncXExecutor } from "../../mod.ts";
import { until } from "../harness/until.ts";
import { ChaosStack } from "./chaos_stack.ts";
import { chaosTask, failureOutcome, type Outcome, outcomeLabel, SideEffects } from "./outcome.ts";
import { type PhaseName, PHASES, runPhase } from "./phases.ts";

export { type PhaseName, PHASES } from "./phases.ts";

/** Options of {@linkcode ChaosRun.start}. */
export interface ChaosOptions {
  /** Tasks over the whole run, split evenly among the phases. @default 600 */
  tasks?: number;
  /** Phases to run, in this order. @default all of {@linkcode PHASES} */
  phases?: readonly PhaseName[];
  /** Workers of the endpoint. @default 2 */
  workers?: number;
  /**
   * How the endpoint's local block runs its manager; `manager-kill` needs `"process"` (there is
   * no manager process to kill otherwise). @default "in_process"
   */
  localManager?: "in_process" | "process";
  /** How long each task sleeps after writing its line. @default 20 */
  taskMs?: number;
  /** How long the broker stays down in `broker-long` (besides stopping and starting). @default 65_000 */
  longOutageMs?: number;
  /** How long the link stays cut in `link-cut`. @default 8_000 */
  cutMs?: number;
  /** How long a wave may take to settle once its fault is over. @default 90_000 */
  settleTimeoutMs?: number;
  /** Copy the processes' logs to stderr. @default false */
  echo?: boolean;
  /** Where progress and report lines go. @default console.error */
  log?: (line: string) => void;
}

/** One submitted task and everything seen of it. */
export interface TaskRecord {
  /** Its number: its argument and its expected value. */
  n: number;
  phase: PhaseName;
  future: FuncXFuture<unknown>;
  /** How it settled; `undefined` while pending. */
  outcome: Outcome | undefined;
  /** Every `setResult`/`setException` the future got, settled or not. */
  deliveries: Outcome[];
  /** Times its settle callbacks ran. */
  settles: number;
}

/** What a phase saw and what was wrong. */
export interface PhaseReport {
  name: string;
  tasks: number;
  values: number;
  workerLost: number;
  managerLost: number;
  reruns: number;
  seconds: number;
  notes: string[];
  problems: string[];
}

/** A chaos run in progress: the stack, the executor and every task submitted. */
export class ChaosRun implements AsyncDisposable {
  readonly stack: ChaosStack;
  readonly fx: FuncXExecutor;
  readonly effects: SideEffects;
  readonly options: Required<Omit<ChaosOptions, "log">> & { log: (line: string) => void };
  readonly records: TaskRecord[] = [];
  readonly reports: PhaseReport[] = [];
  /** Worker pids a phase SIGKILLed. */
  readonly killedWorkers: Set<number> = new Set();
  /** Manager pids a phase SIGKILLed. */
  readonly killedManagers: Set<number> = new Set();
  /** Tasks that must fail so: held by a process a phase killed. */
  readonly mustBeLost: Map<number, "WorkerLost" | "ManagerLost"> = new Map();
  /** Tasks allowed to run more than once: in flight when the daemon was killed. */
  readonly mayRerun: Set<number> = new Set();
  #next = 1;

  private constructor(stack: ChaosStack, options: ChaosRun["options"]) {
    this.stack = stack;
    this.options = options;
    this.effects = new SideEffects(stack.sideEffectFile);
    this.fx = new FuncXExecutor({
      endpointId: stack.endpoint.endpointId,
      client: stack.client(),
      label: "chaos",
    });
  }

  /** Starts the stack and the executor. */
  static async start(options: ChaosOptions = {}): Promise<ChaosRun> {
    const o = {
      tasks: options.tasks ?? 600,
      phases: options.phases ?? PHASES,
      workers: options.workers ?? 2,
      localManager: options.localManager ?? "in_process",
      taskMs: options.taskMs ?? 20,
      longOutageMs: options.longOutageMs ?? 65_000,
      cutMs: options.cutMs ?? 8_000,
      settleTimeoutMs: options.settleTimeoutMs ?? 90_000,
      echo: options.echo ?? false,
      log: options.log ?? ((line: string) => console.error(line)),
    };
    for (const p of o.phases) {
      if (!PHASES.includes(p)) throw new RangeError(`Unknown chaos phase "${p}"`);
    }
    if (o.localManager === "in_process" && o.phases.includes("manager-kill")) {
      throw new RangeError(
        'The "manager-kill" phase needs a manager process: run it with localManager "process"',
      );
    }
    const started = performance.now();
    const stack = await ChaosStack.start({
      workers: o.workers,
      localManager: o.localManager,
      echo: o.echo,
    });
    const run = new ChaosRun(stack, o);
    o.log(
      `chaos: stack up in ${seconds(started)} s (dir ${stack.dir}, endpoint ` +
        `${stack.endpoint.endpointId}, task group ${run.fx.taskGroupId}, ` +
        `${o.localManager} manager); ` +
        `${run.waveSize} tasks per phase: ${o.phases.join(", ")}`,
    );
    return run;
  }

  /** Tasks per phase wave. */
  get waveSize(): number {
    return Math.max(10, Math.floor(this.options.tasks / this.options.phases.length));
  }

  /** Submits `count` tasks (held until `gate` exists, when given) for `phase`. */
  submit(phase: PhaseName, count: number, gate: string | null = null): TaskRecord[] {
    const out: TaskRecord[] = [];
    for (let i = 0; i < count; i++) {
      const n = this.#next++;
      const future = this.fx.submit(
        chaosTask,
        n,
        this.stack.sideEffectFile,
        this.options.taskMs,
        gate,
      ) as FuncXFuture<unknown>;
      const rec: TaskRecord = { n, phase, future, outcome: undefined, deliveries: [], settles: 0 };
      const setResult = future.setResult.bind(future);
      const setException = future.setException.bind(future);
      future.setResult = (v) => {
        rec.deliveries.push({ kind: "value", value: v });
        setResult(v);
      };
      future.setException = (e) => {
        rec.deliveries.push(failureOutcome(e));
        setException(e);
      };
      future.onSettled(() => rec.settles++);
      future.then(
        (value) => void (rec.outcome = { kind: "value", value }),
        (err) => void (rec.outcome = failureOutcome(err)),
      );
      out.push(rec);
      this.records.push(rec);
    }
    return out;
  }

  /** Waits until `fraction` of `recs` have written their line. */
  async started(recs: readonly TaskRecord[], fraction: number): Promise<void> {
    const want = Math.max(1, Math.ceil(recs.length * fraction));
    await until(
      `${want} of ${recs.length} tasks to start`,
      async () => {
        await this.effects.refresh();
        return recs.filter((r) => this.effects.runs(r.n).length > 0).length >= want;
      },
      this.options.settleTimeoutMs,
      20,
    );
  }

  /** Waits until every one of `recs` settled or the settle timeout; returns those pending. */
  async settle(recs: readonly TaskRecord[], timeoutMs?: number): Promise<TaskRecord[]> {
    const deadline = Date.now() + (timeoutMs ?? this.options.settleTimeoutMs);
    let pending = recs.filter((r) => r.outcome === undefined);
    while (pending.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      pending = pending.filter((r) => r.outcome === undefined);
    }
    return pending;
  }

  /** Runs one phase, checks its wave and prints its line. */
  async phase(name: PhaseName): Promise<PhaseReport> {
    const started = performance.now();
    const before = this.records.length;
    const notes: string[] = [];
    const problems: string[] = [];
    try {
      await runPhase(this, name, { note: (t) => notes.push(t), problem: (t) => problems.push(t) });
    } catch (err) {
      problems.push(`the phase itself failed: ${(err as Error).message.split("\n")[0]}`);
    }
    const recs = this.records.slice(before);
    const pending = await this.settle(recs, 0);
    if (pending.length > 0) {
      const accepted = pending.filter((r) => r.future.taskId !== undefined).length;
      problems.push(
        `${pending.length} of ${recs.length} futures unsettled after the settle timeout ` +
          `(${accepted} of them accepted by the service)`,
      );
    }
    for (const repair of await this.stack.heal()) problems.push(`after the phase, ${repair}`);
    const report = await this.#check(name, recs, started, notes, problems);
    this.reports.push(report);
    this.options.log(reportLine(report));
    return report;
  }

  /** The checks over the whole run: stragglers, the task group, double deliveries, reruns. */
  async finish(): Promise<PhaseReport> {
    const started = performance.now();
    const problems: string[] = [];
    const notes: string[] = [];
    const pending = await this.settle(this.records, 30_000);
    if (pending.length > 0) {
      const byPhase = countBy(pending.map((r) => r.phase));
      problems.push(`${pending.length} futures never settled (${byPhase})`);
    }
    const accepted = this.records.map((r) => r.future.taskId).filter((id) => id !== undefined);
    const group = await until(
      "the task group to be read",
      async () => {
        try {
          return await this.fx.client.getTaskGroup(this.fx.taskGroupId);
        } catch {
          return undefined;
        }
      },
      60_000,
      500,
    );
    const inGroup = new Set(group);
    const submitted = new Set(accepted);
    if (inGroup.size !== group.length) {
      problems.push(`the task group lists ${group.length - inGroup.size} task ids twice`);
    }
    const extra = [...inGroup].filter((id) => !submitted.has(id));
    const missing = [...submitted].filter((id) => !inGroup.has(id));
    if (extra.length > 0) {
      problems.push(`the task group holds ${extra.length} tasks no future was given for`);
    }
    if (missing.length > 0) {
      problems.push(`the task group lacks ${missing.length} accepted tasks`);
    }
    notes.push(
      `${this.records.length} futures, ${accepted.length} accepted, group of ${group.length}`,
    );
    const report = await this.#check("whole run", this.records, started, notes, problems);
    this.options.log(reportLine(report));
    return report;
  }

  async #check(
    name: string,
    recs: readonly TaskRecord[],
    started: number,
    notes: string[],
    problems: string[],
  ): Promise<PhaseReport> {
    await this.effects.refresh();
    let values = 0;
    let workerLost = 0;
    let managerLost = 0;
    let reruns = 0;
    const wrong: string[] = [];
    const unexpectedLost: string[] = [];
    const failures: string[] = [];
    const twice: number[] = [];
    const redundant: string[] = [];
    for (const r of recs) {
      const runs = this.effects.runs(r.n);
      if (runs.length > 1) {
        reruns++;
        if (!this.mayRerun.has(r.n)) twice.push(r.n);
      }
      if (r.settles > 1) problems.push(`task ${r.n}'s future settled ${r.settles} times`);
      const labels = new Set(r.deliveries.map(outcomeLabel));
      if (labels.size > 1) redundant.push(`${r.n}: ${[...labels].join(" / ")}`);
      const must = this.mustBeLost.get(r.n);
      const o = r.outcome;
      if (o === undefined) continue;
      if (must !== undefined && (o.kind !== "lost" || o.code !== must)) {
        wrong.push(`task ${r.n} was on a killed process but got ${outcomeLabel(o)}, not ${must}`);
        continue;
      }
      if (o.kind === "value") {
        if (o.value !== r.n) wrong.push(`task ${r.n} returned ${JSON.stringify(o.value)}`);
        else if (runs.length === 0) wrong.push(`task ${r.n} returned without ever running`);
        else values++;
      } else if (o.kind === "lost") {
        if (o.code === "WorkerLost") workerLost++;
        else managerLost++;
        const onKilled = runs.every((run) =>
          o.code === "WorkerLost"
            ? this.killedWorkers.has(run.pid)
            : this.killedManagers.has(run.ppid)
        );
        if (!onKilled) unexpectedLost.push(`task ${r.n} (${o.code}: ${o.message.slice(0, 80)})`);
      } else {
        failures.push(outcomeLabel(o));
      }
    }
    if (wrong.length > 0) problems.push(`${wrong.length} wrong outcomes: ${sample(wrong)}`);
    if (unexpectedLost.length > 0) {
      problems.push(
        `${unexpectedLost.length} tasks lost that were not on a killed worker or manager: ` +
          sample(unexpectedLost),
      );
    }
    if (failures.length > 0) {
      problems.push(`${failures.length} futures failed by something else: ${countBy(failures)}`);
    }
    if (twice.length > 0) {
      problems.push(
        `${twice.length} tasks ran more than once without a daemon kill in flight: ` +
          sample(
            twice.map((n) =>
              `${n} (worker/parent ${
                this.effects.runs(n).map((r) => `${r.pid}/${r.ppid}`).join(", ")
              })`
            ),
          ),
      );
    }
    if (redundant.length > 0) {
      problems.push(`${redundant.length} futures got conflicting deliveries: ${sample(redundant)}`);
    }
    const deliveries = recs.reduce((s, r) => s + Math.max(0, r.deliveries.length - 1), 0);
    if (deliveries > 0) notes.push(`${deliveries} repeated deliveries ignored by settled futures`);
    return {
      name,
      tasks: recs.length,
      values,
      workerLost,
      managerLost,
      reruns,
      seconds: Number(seconds(started)),
      notes,
      problems,
    };
  }

  /** Stops the executor (without waiting for anything) and the whole stack. */
  async close(): Promise<void> {
    await this.fx.shutdown({ wait: false, cancelFutures: true }).catch(() => {});
    await this.stack.close();
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** One line per phase: its counts, then `ok` or its problems. */
export function reportLine(r: PhaseReport): string {
  const other = r.tasks - r.values - r.workerLost - r.managerLost;
  const counts = `${r.tasks} tasks: ${r.values} values, ${r.workerLost} WorkerLost, ` +
    `${r.managerLost} ManagerLost, ${other} other or pending; ${r.reruns} ran twice; ${r.seconds} s`;
  const notes = r.notes.length > 0 ? ` [${r.notes.join("; ")}]` : "";
  const verdict = r.problems.length === 0 ? "ok" : `FAILED: ${r.problems.join(" | ")}`;
  return `chaos ${r.name}: ${counts}${notes} -> ${verdict}`;
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

function sample(items: readonly string[]): string {
  return items.slice(0, 5).join(", ") +
    (items.length > 5 ? `, ... (${items.length - 5} more)` : "");
}

function countBy(items: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const i of items) counts.set(i, (counts.get(i) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n}x "${k}"`).join(", ");
}
