/**
 * A private Prometheus server (Debian's `prometheus`) for the metrics tests: a generated config
 * that scrapes the given targets every `scrapeIntervalS`, a temporary storage directory, a free
 * port on 127.0.0.1; queried through its HTTP API. Also `promtool check metrics` on a text.
 *
 * @module
 */
import { join } from "node:path";
import { freePorts } from "./_os.ts";
import { until } from "./until.ts";

/** One scrape job. */
export interface ScrapeTarget {
  /** The `job` label. */
  job: string;
  /** Full URL of the metrics, e.g. `http://127.0.0.1:8000/metrics`. */
  url: string;
  /** Bearer token sent with each scrape. @default none */
  bearerToken?: string;
}

/** A running private Prometheus. */
export class PrometheusServer implements AsyncDisposable {
  readonly address: string;
  readonly #child: Deno.ChildProcess;
  readonly #dir: string;
  readonly #logFile: string;

  private constructor(address: string, child: Deno.ChildProcess, dir: string, logFile: string) {
    this.address = address;
    this.#child = child;
    this.#dir = dir;
    this.#logFile = logFile;
  }

  /** Starts Prometheus scraping `targets`; resolves once it answers `/-/ready`. */
  static async start(
    targets: readonly ScrapeTarget[],
    scrapeIntervalS = 1,
  ): Promise<PrometheusServer> {
    const dir = await Deno.makeTempDir({ prefix: "funcx-prometheus-" });
    const jobs = targets.map((t) => {
      const u = new URL(t.url);
      return [
        `  - job_name: ${JSON.stringify(t.job)}`,
        `    metrics_path: ${JSON.stringify(u.pathname)}`,
        ...(t.bearerToken
          ? ["    authorization:", `      credentials: ${JSON.stringify(t.bearerToken)}`]
          : []),
        "    static_configs:",
        `      - targets: [${JSON.stringify(u.host)}]`,
      ].join("\n");
    });
    const config = join(dir, "prometheus.yml");
    await Deno.writeTextFile(
      config,
      `global:\n  scrape_interval: ${scrapeIntervalS}s\n  scrape_timeout: ${scrapeIntervalS}s\n` +
        `scrape_configs:\n${jobs.join("\n")}\n`,
    );
    const [port] = freePorts(1);
    const logFile = join(dir, "prometheus.log");
    const log = await Deno.open(logFile, { write: true, create: true });
    const child = new Deno.Command("prometheus", {
      args: [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      stdout: "null",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    void child.stderr.pipeTo(log.writable).catch(() => {});
    const server = new PrometheusServer(`http://127.0.0.1:${port}`, child, dir, logFile);
    let exited = false;
    child.status.then(() => (exited = true));
    try {
      await until(
        "Prometheus to be ready",
        async () => {
          if (exited) throw new Error(`Prometheus exited: ${await server.log()}`);
          const res = await fetch(`${server.address}/-/ready`).catch(() => undefined);
          await res?.body?.cancel();
          return res?.ok;
        },
        60_000,
        200,
      );
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** Prometheus's log. */
  async log(): Promise<string> {
    return await Deno.readTextFile(this.#logFile).catch(() => "");
  }

  /** The value of an instant query that yields one number; undefined when it yields none. */
  async query(expr: string): Promise<number | undefined> {
    const res = await fetch(`${this.address}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = await res.json() as {
      status: string;
      error?: string;
      data?: { resultType: string; result: Array<{ value: [number, string] }> };
    };
    if (body.status !== "success") throw new Error(`Query "${expr}" failed: ${body.error}`);
    const r = body.data?.result ?? [];
    if (r.length > 1) throw new Error(`Query "${expr}" gave ${r.length} series, not one`);
    return r[0] ? Number(r[0].value[1]) : undefined;
  }

  /** Waits until `expr` yields a number for which `ok` holds; returns it. */
  async waitFor(expr: string, ok: (n: number) => boolean, timeoutMs = 60_000): Promise<number> {
    let last: number | undefined;
    try {
      return await until(
        `Prometheus query ${expr}`,
        async () => {
          last = await this.query(expr);
          return last !== undefined && ok(last) ? { n: last } : undefined;
        },
        timeoutMs,
        250,
      ).then((v) => v.n);
    } catch (err) {
      throw new Error(`${(err as Error).message} (last value: ${last})`, { cause: err });
    }
  }

  /** Stops the server and removes its directory. */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await this.#child.status;
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** `promtool check metrics` on `text`: its exit code and what it printed. */
export async function promtoolCheckMetrics(text: string): Promise<{ code: number; out: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}
