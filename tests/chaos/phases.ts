/**
 * The faults of a chaos run, one per phase. Each phase submits its wave (part of it before the
 * fault and the rest while the fault lasts, so submitting is hurt too), injects its fault into
 * the real processes, ends it, and waits for the wave to settle; `chaos.ts` checks the outcome.
 *
 * @module
 */
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { denoRunArgs } from "../harness/process.ts";
import { until } from "../harness/until.ts";
import type { ChaosRun, TaskRecord } from "./chaos.ts";
import { outcomeKey } from "./outcome.ts";

/** Every phase, in the order a full run takes them. */
export const PHASES = [
  "baseline",
  "worker-kill",
  "manager-kill",
  "daemon-kill",
  "broker-brief",
  "broker-long",
  "link-cut",
  "service-kill",
  "service-kill-submit",
  "attach-2",
  "attach-3",
] as const;

/** The name of a phase. */
export type PhaseName = typeof PHASES[number];

/** Where a phase writes what it did and what went wrong. */
export interface PhaseLog {
  note(text: string): void;
  problem(text: string): void;
}

/** Runs phase `name` of `run`, up to its wave having settled (or the settle timeout). */
export async function runPhase(run: ChaosRun, name: PhaseName, log: PhaseLog): Promise<void> {
  const size = run.waveSize;
  const half = Math.floor(size / 2);
  const gate = join(run.stack.dir, `gate-${name}`);
  const open = () => Deno.writeTextFile(gate, "");
  const waitAll = async () => void await run.settle(run.records.filter((r) => r.phase === name));
  let faultAt = performance.now();
  const fault = () => void (faultAt = performance.now());
  const down = () => `${((performance.now() - faultAt) / 1000).toFixed(1)} s`;
  try {
    switch (name) {
      case "baseline": {
        run.submit(name, size);
        return await waitAll();
      }
      case "worker-kill": {
        const [held] = run.submit(name, 1, gate);
        run.submit(name, half);
        const { pid } = await firstRun(run, held!);
        run.killedWorkers.add(pid);
        run.mustBeLost.set(held!.n, "WorkerLost");
        Deno.kill(pid, "SIGKILL");
        log.note(`SIGKILLed worker ${pid} running task ${held!.n}`);
        run.submit(name, size - half - 1);
        return await waitAll();
      }
      case "manager-kill": {
        const held = run.submit(name, run.options.workers, gate);
        run.submit(name, half);
        const runs = await Promise.all(held.map((h) => firstRun(run, h)));
        const managers = new Set(runs.map((r) => r.ppid));
        for (const m of managers) {
          run.killedManagers.add(m);
          Deno.kill(m, "SIGKILL");
        }
        for (const h of held) run.mustBeLost.set(h.n, "ManagerLost");
        log.note(`SIGKILLed manager ${[...managers].join(", ")} with ${held.length} tasks held`);
        run.submit(name, size - half - held.length);
        return await waitAll();
      }
      case "daemon-kill": {
        const first = run.submit(name, half);
        await run.started(first, 0.25);
        for (const r of run.records) if (r.outcome === undefined) run.mayRerun.add(r.n);
        fault();
        await run.stack.killEndpoint();
        run.submit(name, size - half);
        await run.stack.startEndpoint();
        log.note(
          `daemon SIGKILLed with ${run.mayRerun.size} tasks unsettled; back after ${down()}`,
        );
        return await waitAll();
      }
      case "broker-brief":
      case "broker-long": {
        const first = run.submit(name, half);
        await run.started(first, 0.25);
        fault();
        await run.stack.broker.stopNode();
        run.submit(name, size - half);
        if (name === "broker-long") await delay(run.options.longOutageMs);
        await run.stack.broker.startNode();
        log.note(`RabbitMQ node stopped and started again with its data: down ${down()}`);
        return await waitAll();
      }
      case "link-cut": {
        const first = run.submit(name, half);
        await run.started(first, 0.25);
        // Both links must be up to be cut: the SDK opens its result stream when it has tasks
        // again, which may be after the first of them have started.
        await until(
          "the endpoint's and the SDK's AMQP links through the proxy",
          () => run.stack.amqpProxy.liveConnections >= 2,
          30_000,
        ).catch(() => {});
        const cut = run.stack.amqpProxy.cut({ forMs: run.options.cutMs });
        run.submit(name, size - half);
        log.note(`cut ${cut} AMQP connections for ${run.options.cutMs / 1000} s`);
        if (cut < 2) log.problem(`only ${cut} AMQP links went through the proxy (endpoint, SDK)`);
        await until("the proxy to be restored", () => !run.stack.amqpProxy.isCut, 600_000);
        return await waitAll();
      }
      case "service-kill": {
        const first = run.submit(name, half);
        await run.started(first, 0.25);
        fault();
        await run.stack.killService();
        run.submit(name, size - half);
        await run.stack.startService();
        log.note(`service SIGKILLed and started again on its database after ${down()}`);
        return await waitAll();
      }
      case "service-kill-submit": {
        const { killed, disarm } = killOnSubmitAnswer(run);
        run.submit(name, size);
        const link = await withTimeout(killed, run.options.settleTimeoutMs).finally(disarm);
        await run.stack.service.process.status;
        await run.stack.startService();
        log.note(`service SIGKILLed as it answered a submit (HTTP link ${link}); answer dropped`);
        return await waitAll();
      }
      case "attach-2":
      case "attach-3":
        return await attach(run, name, name === "attach-2" ? 2 : 3, gate, log);
    }
  } finally {
    // Held tasks on killed processes must not keep orphaned workers busy.
    await open();
  }
}

/** The first run of a task, once its line is in the side-effect file. */
async function firstRun(run: ChaosRun, rec: TaskRecord) {
  return await until(`task ${rec.n} to start`, async () => {
    await run.effects.refresh();
    return run.effects.runs(rec.n)[0];
  }, run.options.settleTimeoutMs);
}

/**
 * Arms the service's HTTP proxy: the first answer to a `POST /v2/submit` is dropped and the
 * service SIGKILLed as it goes out, so the tasks are stored but the executor never hears so.
 * `killed` resolves with the proxy link the submit went over; `disarm` removes the trap.
 */
function killOnSubmitAnswer(run: ChaosRun): { killed: Promise<number>; disarm: () => void } {
  const { promise, resolve } = Promise.withResolvers<number>();
  const submits = new Set<number>();
  const untap = run.stack.httpProxy.tap((direction, chunk, link) => {
    const head = new TextDecoder().decode(chunk.subarray(0, 32));
    if (direction === "up") {
      if (head.startsWith("POST /v2/submit")) submits.add(link);
      return true;
    }
    if (!submits.has(link)) return true;
    untap();
    run.stack.service.process.signal("SIGKILL");
    resolve(link);
    return false;
  });
  return { killed: promise, disarm: untap };
}

/** An attached process's last word. */
interface AttachReport {
  event: "done";
  tasks: number;
  settled: number;
  outcomes: Record<string, string>;
  conflicting: number;
}

/**
 * Holds the wave at a gate, attaches `k` separate processes to the task group with
 * `reloadTasks()`, opens the gate, and compares what each saw with this process's futures.
 */
async function attach(
  run: ChaosRun,
  name: string,
  k: number,
  gate: string,
  log: PhaseLog,
): Promise<void> {
  const wave = run.submit(name as "attach-2", run.waveSize, gate);
  await until("the held wave to be accepted", () => wave.every((r) => r.future.taskId), 120_000);
  const known = run.records.filter((r) => r.future.taskId !== undefined).length;
  const procs = Array.from({ length: k }, (_, i) => attachProcess(run, `${name}-${i + 1}`));
  try {
    const attached = await Promise.all(procs.map((p) => p.attached));
    log.note(`${k} processes attached with ${attached.map((a) => a.tasks).join("/")} tasks`);
    for (const a of attached) {
      if (a.tasks < known) log.problem(`an attached process saw ${a.tasks} of ${known} tasks`);
    }
    await Deno.writeTextFile(gate, "");
    await run.settle(wave);
    const reports = await Promise.all(procs.map(async (p) => {
      const done = await withTimeout(p.done, run.options.settleTimeoutMs).catch(() => undefined);
      if (done !== undefined) return done;
      p.child.kill("SIGTERM"); // it prints what it has so far
      return await p.done;
    }));
    const byId = new Map(run.records.map((r) => [r.future.taskId, r]));
    for (const [i, rep] of reports.entries()) {
      const who = `attached process ${i + 1}`;
      if (rep === undefined) {
        log.problem(`${who} ended without a report`);
        continue;
      }
      if (rep.settled < rep.tasks) {
        log.problem(`${who} hung with ${rep.settled} of ${rep.tasks} futures settled`);
      }
      if (rep.conflicting > 0) log.problem(`${who} got ${rep.conflicting} conflicting deliveries`);
      let mismatched = 0;
      let example = "";
      for (const [id, label] of Object.entries(rep.outcomes)) {
        const mine = byId.get(id);
        const ours = mine?.outcome === undefined ? "pending" : outcomeKey(mine.outcome);
        if (ours !== label) {
          mismatched++;
          example ||= `task ${mine?.n ?? id}: here ${ours}, there ${label}`;
        }
      }
      if (mismatched > 0) {
        log.problem(`${who} disagrees on ${mismatched} outcomes (e.g. ${example})`);
      }
    }
  } finally {
    for (const p of procs) {
      try {
        p.child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await p.child.status;
    }
  }
}

/** A `deno run` of `attach_main.ts` and its two events. */
function attachProcess(run: ChaosRun, label: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRunArgs("tests/chaos/attach_main.ts", [
      run.stack.endpoint.endpointId,
      run.fx.taskGroupId,
    ]),
    env: { ...run.stack.clientEnv, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  void child.stderr.pipeTo(
    Deno.openSync(join(run.stack.dir, `${label}.log`), { create: true, append: true }).writable,
  ).catch(() => {});
  const attached = Promise.withResolvers<{ tasks: number }>();
  const done = Promise.withResolvers<AttachReport | undefined>();
  void (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      for (let nl; (nl = buf.indexOf("\n")) >= 0;) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const ev = JSON.parse(line);
        if (ev.event === "attached") attached.resolve(ev);
        if (ev.event === "done") done.resolve(ev);
      }
    }
    const status = await child.status;
    const why = new Error(`${label} exited with code ${status.code} before attaching`);
    attached.reject(why);
    done.resolve(undefined);
  })();
  return { child, attached: withTimeout(attached.promise, 120_000), done: done.promise };
}

/** `p`, or a rejection after `ms` (the timer does not outlive `p`). */
async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
