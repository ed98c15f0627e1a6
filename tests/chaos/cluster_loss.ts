/**
 * The chaos phase of losing broker nodes and a service replica under load. The stack: a private
 * RabbitMQ cluster of 3 nodes (quorum queues), two `funcx-service` replicas on one PostgreSQL
 * database behind a round-robin load balancer, two endpoints started with the CLI, and two SDK
 * processes (`cluster_sdk_main.ts`) submitting at a steady rate to both endpoints, one of them
 * restarting halfway and reloading its task groups. Every process is given every node's address.
 *
 * While the tasks flow: the first node (the one every link tries first) is SIGKILLed, a service
 * replica is SIGKILLed, the first node is started again and rejoins, then the second node is
 * stopped cleanly and stays down. Passing means: every future settled with its own task's value
 * (0 false failures), each task group holds exactly the accepted tasks (0 phantoms), every
 * accepted task's result reached its process (0 lost) and no future saw two outcomes (0
 * duplicated), and no future was left waiting. Tasks that ran more than once (their number
 * twice in the side-effect file) are counted and reported with why they can.
 *
 * `deno run -A tests/chaos/cluster_loss.ts --tasks 10000 [--rate 150] [--no-faults]
 * [--no-direct-results] [--json F]` runs it by hand (`--no-faults`: the same run unhurt, as a
 * baseline; `--no-direct-results`: both replicas send results through the service, two broker
 * hops). A run that fails keeps its directory of logs (the services', endpoints' and SDK
 * processes') and prints its path; `cluster_loss_test.ts` runs a smaller one in the suite.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { FuncXClient } from "../../mod.ts";
import { createDatabase, dropDatabase, sharedPostgres } from "../harness/postgres.ts";
import { denoRunArgs, runDeno } from "../harness/process.ts";
import { LoadBalancer } from "../harness/load_balancer.ts";
import { RabbitCluster } from "../harness/rabbitmq_cluster.ts";
import {
  declaredQueueType,
  type EndpointHandle,
  type ServiceHandle,
  startEndpoint,
  startService,
} from "../harness/stack.ts";

/** Options of {@linkcode runClusterLoss}. */
export interface ClusterLossOptions {
  /** Tasks over both SDK processes. @default 10_000 */
  tasks?: number;
  /** Tasks submitted per second over both processes. @default 100 */
  rate?: number;
  /** How long the results may take once the last task is submitted. @default 180_000 */
  settleTimeoutMs?: number;
  /** Copy the processes' logs to stderr. @default false */
  echo?: boolean;
  /** Hurt the stack; false gives the same run without faults, as a baseline. @default true */
  faults?: boolean;
  /** Where progress lines go. @default console.error */
  log?: (line: string) => void;
  /** More arguments for both replicas' `funcx-service serve`. @default [] */
  serviceArgs?: string[];
}

/** What a run measured. */
export interface ClusterLossReport {
  tasks: number;
  /** Tasks the service accepted (both processes). */
  accepted: number;
  /** Futures settled with anything but their task's own value. */
  falseFailures: number;
  /** Tasks in the groups that no process submitted. */
  phantoms: number;
  /** Accepted tasks whose future never settled or that are missing from their group. */
  lost: number;
  /** Futures that saw a second, different outcome. */
  duplicated: number;
  /** Futures still waiting when the processes reported. */
  waiting: number;
  /** Tasks that ran more than once, and how many extra runs. */
  reruns: { tasks: number; extraRuns: number };
  /**
   * Broker links that failed over to another node, from the logs: the endpoints' connects after
   * their first, and the surviving replica's restored connections.
   */
  failovers: { endpoints: number; service: number };
  /** Seconds from the first submit until both SDK processes reported. */
  flowSeconds: number;
  /** What happened when, seconds from the start of the run. */
  timeline: string[];
  seconds: number;
  /** Failures of the checks above, as sentences; empty when the run passed. */
  problems: string[];
}

interface SdkReport {
  submitted: number;
  settled: number;
  outcomes: Record<string, string>;
  numbers: Record<string, number>;
  conflicting: number;
  groups: string[];
}

/** Runs the phase once and reports; every process it started is gone when it returns. */
export async function runClusterLoss(options: ClusterLossOptions = {}): Promise<ClusterLossReport> {
  const tasks = options.tasks ?? 10_000;
  const rate = options.rate ?? 100;
  const echo = options.echo ?? false;
  const say = options.log ?? ((line: string) => console.error(line));
  const dir = await Deno.makeTempDir({ prefix: "funcx-cluster-loss-" });
  // The directory (every process's log) is kept when the run fails, and its path printed.
  let keep = true;
  const cleanup: Array<() => Promise<unknown>> = [
    () =>
      keep
        ? Promise.resolve(say(`cluster-loss: the run's logs are kept in ${dir}`))
        : Deno.remove(dir, { recursive: true }).catch(() => {}),
  ];
  const began = performance.now();
  const at = () => ((performance.now() - began) / 1000).toFixed(1);
  const timeline: string[] = [];
  const mark = (what: string) => {
    timeline.push(`${at()} s: ${what}`);
    say(`cluster-loss ${at()} s: ${what}`);
  };
  try {
    const cluster = await RabbitCluster.start({ nodes: 3, verbose: echo });
    cleanup.unshift(() => cluster.stop());
    mark("3-node RabbitMQ cluster running");
    const pgAdmin = await sharedPostgres();
    const dbName = `cluster_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const database = await createDatabase(pgAdmin, dbName);
    cleanup.unshift(() => dropDatabase(pgAdmin, dbName).catch(() => {}));
    const management = cluster.nodes.map((n) => {
      const u = new URL(n.info.managementUrl);
      u.username = n.info.adminUser;
      u.password = n.info.adminPassword;
      return u.toString().replace(/\/$/, "");
    }).join(",");
    const amqpUrl = cluster.amqpUrls.join(",");
    const creds = JSON.parse(
      await runDeno("cli/funcx_service.ts", [
        "client",
        "create",
        "--database",
        database,
        "--user",
        "dev",
      ]),
    );
    const existingClient = { clientId: creds.client_id, clientSecret: creds.client_secret };
    const replica = async (name: string): Promise<ServiceHandle> => {
      await Deno.mkdir(join(dir, name));
      const s = await startService({
        dir: join(dir, name),
        amqpUrl,
        database,
        existingClient,
        echo,
        args: ["--management-url", management, ...(options.serviceArgs ?? [])],
      });
      cleanup.unshift(() => s.process.stop(5).catch(() => {}));
      return s;
    };
    const replicas = [await replica("a"), await replica("b")] as const;
    const lb = LoadBalancer.start(replicas.map((r) => Number(new URL(r.address).port)));
    cleanup.unshift(() => lb.close());
    const address = `http://127.0.0.1:${lb.port}`;
    const front: ServiceHandle = {
      ...replicas[0],
      address,
      env: { ...replicas[0].env, FUNCX_SERVICE_ADDRESS: address },
    };
    mark("2 service replicas behind a load balancer");
    const endpoints: EndpointHandle[] = [];
    for (const name of ["east", "west"]) {
      const ep = await startEndpoint({ service: front, dir, name, workers: 2, echo });
      cleanup.unshift(() => ep.process.stop(5).catch(() => {}));
      endpoints.push(ep);
    }
    mark("2 endpoints consuming");

    const sideEffects = join(dir, "side-effects.txt");
    await Deno.writeTextFile(sideEffects, "");
    const perProcess = Math.ceil(tasks / 2);
    const counts = [perProcess, tasks - perProcess];
    const sdk = counts.map((count, k) => {
      const arg = {
        endpoints: endpoints.map((e) => e.endpointId),
        from: k * perProcess,
        count,
        rate: rate / 2,
        sideEffects,
        reload: k === 1,
      };
      const child = new Deno.Command(Deno.execPath(), {
        args: [...denoRunArgs("tests/chaos/cluster_sdk_main.ts", [JSON.stringify(arg)])],
        env: front.env,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Its stderr goes to a log in the run's directory, and with `echo` to this stderr too.
      const sdkLog = Deno.openSync(join(dir, `sdk-${k + 1}.log`), { write: true, create: true });
      const [toLog, toEcho] = echo ? child.stderr.tee() : [child.stderr, undefined];
      const stderrDone = Promise.all([
        toLog.pipeTo(sdkLog.writable).catch(() => {}),
        toEcho?.pipeTo(Deno.stderr.writable, { preventClose: true }).catch(() => {}),
      ]);
      cleanup.unshift(async () => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
        await child.status;
        await stderrDone;
      });
      return { child, done: lastJson(child.stdout) };
    });
    mark(`2 SDK processes submitting ${tasks} tasks at ${rate}/s`);

    const submitMs = (tasks / rate) * 1000;
    const submitAt = performance.now();
    const wait = (fraction: number) =>
      new Promise((r) =>
        setTimeout(r, Math.max(0, submitAt + fraction * submitMs - performance.now()))
      );
    const [first, second] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0]];
    if (options.faults ?? true) {
      await wait(0.15);
      await first.stopNode({ kill: true });
      mark(`SIGKILLed broker node 1 (${first.info.nodeName})`);
      await wait(0.3);
      replicas[1].process.signal("SIGKILL");
      await replicas[1].process.status;
      mark("SIGKILLed service replica b");
      await wait(0.4);
      await first.startNode();
      await cluster.waitRunning(3);
      mark("broker node 1 started again and running in the cluster");
      await wait(0.6);
      await second.stopNode();
      mark(`stopped broker node 2 (${second.info.nodeName}) cleanly; it stays down`);
    }

    const timeout = new Promise<"timeout">((r) =>
      setTimeout(
        () => r("timeout"),
        Math.max(0, submitAt + submitMs - performance.now()) +
          (options.settleTimeoutMs ?? 180_000),
      )
    );
    const finished = await Promise.race([Promise.all(sdk.map((s) => s.child.status)), timeout]);
    if (finished === "timeout") {
      mark("settle timeout: asking the SDK processes for what they have");
      // The broker's view of the stall, kept with the logs: each queue's ready and unacked
      // messages and consumers, and every consumer with its channel.
      const node = cluster.liveNode();
      const vhost = decodeURIComponent(new URL(cluster.amqpUrls[0]!).pathname.slice(1)) || "/";
      const views = await Promise.all([
        node.rabbitmqctl([
          "list_queues",
          "-p",
          vhost,
          "name",
          "type",
          "leader",
          "members",
          "messages_ready",
          "messages_unacknowledged",
          "consumers",
        ]).catch((e) => String(e)),
        node.rabbitmqctl(["list_consumers", "-p", vhost]).catch((e) => String(e)),
      ]);
      await Deno.writeTextFile(join(dir, "broker-at-timeout.txt"), views.join("\n\n"));
      for (const s of sdk) s.child.kill("SIGTERM");
    }
    const reports = await Promise.all(sdk.map((s) => s.done)) as Array<SdkReport | undefined>;
    mark("both SDK processes reported");
    const flowSeconds = (performance.now() - submitAt) / 1000;
    const report = await check(reports, tasks, sideEffects, address, creds, timeline);
    const count = (text: string, re: RegExp) => text.split("\n").filter((l) => re.test(l)).length;
    for (const ep of endpoints) {
      report.failovers.endpoints += Math.max(
        0,
        count(await ep.process.log(), /Connected to the broker/) - 1,
      );
    }
    report.failovers.service = count(await replicas[0].process.log(), /Broker connection restored/);
    // `--queue-type auto` (the service's default) must see the cluster: replicated queues.
    for (const [name, r] of [["a", replicas[0]], ["b", replicas[1]]] as const) {
      if (declaredQueueType(await r.process.log()) !== "quorum") {
        report.problems.push(`replica ${name} did not choose quorum queues on the cluster`);
      }
    }
    report.seconds = (performance.now() - began) / 1000;
    report.flowSeconds = flowSeconds;
    keep = report.problems.length > 0;
    return report;
  } finally {
    for (const c of cleanup) await c();
  }
}

async function check(
  reports: Array<SdkReport | undefined>,
  tasks: number,
  sideEffects: string,
  address: string,
  creds: { client_id: string; client_secret: string },
  timeline: string[],
): Promise<ClusterLossReport> {
  const problems: string[] = [];
  const r: ClusterLossReport = {
    tasks,
    accepted: 0,
    falseFailures: 0,
    phantoms: 0,
    lost: 0,
    duplicated: 0,
    waiting: 0,
    reruns: { tasks: 0, extraRuns: 0 },
    failovers: { endpoints: 0, service: 0 },
    flowSeconds: 0,
    timeline,
    seconds: 0,
    problems,
  };
  const client = new FuncXClient({
    serviceAddress: address,
    clientId: creds.client_id,
    clientSecret: creds.client_secret,
  });
  const failures = new Map<string, number>();
  for (const [k, rep] of reports.entries()) {
    if (!rep) {
      problems.push(`SDK process ${k + 1} printed no report`);
      continue;
    }
    const ids = Object.keys(rep.numbers);
    r.accepted += ids.length;
    r.duplicated += rep.conflicting;
    const waiting: string[] = [];
    for (const id of ids) {
      const outcome = rep.outcomes[id];
      if (outcome === undefined) waiting.push(id);
      else if (outcome !== `value ${rep.numbers[id]}`) {
        r.falseFailures++;
        failures.set(outcome, (failures.get(outcome) ?? 0) + 1);
      }
    }
    r.waiting += waiting.length;
    if (waiting.length > 0) {
      // Where the waiting ones are: the service's state of each, and whether it ran.
      const ran = new Set((await Deno.readTextFile(sideEffects)).split("\n"));
      const states = new Map<string, number>();
      for (const [id, b] of await client.getBatchResult(waiting)) {
        const key = `${b.status}${ran.has(String(rep.numbers[id])) ? " (ran)" : ""}`;
        states.set(key, (states.get(key) ?? 0) + 1);
      }
      problems.push(
        `SDK process ${k + 1}${k === 1 ? " (reloaded)" : ""}: ${waiting.length} futures waiting; ` +
          `at the service: ${[...states].map(([s, n]) => `${n}× ${s}`).join(", ")}`,
      );
    }
    const inGroups = new Set<string>();
    for (const g of rep.groups) for (const id of await client.getTaskGroup(g)) inGroups.add(id);
    r.phantoms += [...inGroups].filter((id) => !(id in rep.numbers)).length;
    r.lost += ids.filter((id) => !inGroups.has(id) || rep.outcomes[id] === undefined).length;
  }
  const runs = new Map<string, number>();
  for (const line of (await Deno.readTextFile(sideEffects)).split("\n")) {
    if (line !== "") runs.set(line, (runs.get(line) ?? 0) + 1);
  }
  for (const n of runs.values()) {
    if (n > 1) {
      r.reruns.tasks++;
      r.reruns.extraRuns += n - 1;
    }
  }
  if (r.accepted !== tasks) problems.push(`${r.accepted} of ${tasks} tasks accepted`);
  if (r.falseFailures > 0) {
    problems.push(
      `${r.falseFailures} false failures: ` +
        [...failures].map(([o, n]) => `${n}× ${o}`).join("; "),
    );
  }
  if (r.phantoms > 0) problems.push(`${r.phantoms} phantom tasks in the task groups`);
  if (r.lost > 0) problems.push(`${r.lost} accepted tasks lost`);
  if (r.duplicated > 0) problems.push(`${r.duplicated} futures saw two outcomes`);
  if (r.waiting > 0) problems.push(`${r.waiting} futures left waiting`);
  return r;
}

/** The last JSON line a process prints whose `event` is `done`. */
async function lastJson(stream: ReadableStream<Uint8Array>): Promise<SdkReport | undefined> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
  let out: SdkReport | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    const m = JSON.parse(line) as { event?: string } & SdkReport;
    if (m.event === "done") out = m;
  }
  return out;
}

/** One line for a report. */
export function clusterLossLine(r: ClusterLossReport): string {
  return `cluster-loss: ${r.accepted}/${r.tasks} tasks in ${r.flowSeconds.toFixed(0)} s ` +
    `(${r.seconds.toFixed(0)} s with the set-up); ` +
    `false failures ${r.falseFailures}, phantoms ${r.phantoms}, lost ${r.lost}, ` +
    `duplicated ${r.duplicated}, waiting ${r.waiting}; re-runs: ${r.reruns.tasks} tasks ` +
    `(${r.reruns.extraRuns} extra runs); failovers: endpoints ${r.failovers.endpoints}, ` +
    `service ${r.failovers.service}` +
    (r.problems.length > 0 ? `; PROBLEMS: ${r.problems.join(" | ")}` : "");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      tasks: { type: "string", default: "10000" },
      rate: { type: "string", default: "100" },
      echo: { type: "boolean", default: false },
      "no-faults": { type: "boolean", default: false },
      "no-direct-results": { type: "boolean", default: false },
      json: { type: "string" },
    },
  });
  const report = await runClusterLoss({
    tasks: Number(values.tasks),
    rate: Number(values.rate),
    echo: values.echo,
    faults: !values["no-faults"],
    serviceArgs: values["no-direct-results"] ? ["--no-direct-results"] : [],
  });
  for (const line of report.timeline) console.log(line);
  console.log(clusterLossLine(report));
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(report, null, 2) + "\n");
  Deno.exit(report.problems.length === 0 ? 0 : 1);
}
