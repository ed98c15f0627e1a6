/**
 * A small in-process metrics registry and its Prometheus text exposition (format 0.0.4): counters,
 * gauges and histograms with labels. The service's `/metrics` and the endpoint daemon's metrics
 * port render one each; the dashboard reads the same instruments. It lives in `sdk/` only because
 * `service/` and `endpoint/` share nothing else: the SDK itself records no metrics.
 *
 * @module
 */

/** Label values of one series, by label name. */
export type Labels = Readonly<Record<string, string>>;

/** The `Content-Type` of the text exposition. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Latency buckets in seconds, from half a millisecond to five minutes. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
];

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** One series' labels in their declared order, checked. */
class Series<T> {
  readonly #labelNames: readonly string[];
  readonly #metric: string;
  readonly values = new Map<string, { labels: string[]; value: T }>();

  constructor(metric: string, labelNames: readonly string[]) {
    for (const l of labelNames) {
      if (!LABEL.test(l) || l === "le") {
        throw new TypeError(`Invalid label name "${l}" of metric "${metric}"`);
      }
    }
    this.#metric = metric;
    this.#labelNames = labelNames;
  }

  /** The entry of `labels`, made by `make` when new. */
  entry(labels: Labels, make: () => T): { labels: string[]; value: T } {
    const [key, values] = this.#key(labels);
    let e = this.values.get(key);
    if (!e) {
      e = { labels: values, value: make() };
      this.values.set(key, e);
    }
    return e;
  }

  /** The value of `labels`, if that series exists. */
  find(labels: Labels): T | undefined {
    return this.values.get(this.#key(labels)[0])?.value;
  }

  #key(labels: Labels): [string, string[]] {
    const values = this.#labelNames.map((n) => {
      const v = labels[n];
      if (v === undefined) {
        throw new TypeError(`Metric "${this.#metric}" needs label "${n}"`);
      }
      return v;
    });
    if (Object.keys(labels).length !== values.length) {
      const extra = Object.keys(labels).filter((k) => !this.#labelNames.includes(k));
      throw new TypeError(`Metric "${this.#metric}" has no label "${extra[0]}"`);
    }
    return [values.join("\u0000"), values];
  }

  /** `{a="x",b="y"}` with `extra` appended, or `""` when there are no labels. */
  render(values: readonly string[], extra?: [string, string]): string {
    const parts = this.#labelNames.map((n, i) => `${n}="${escapeLabel(values[i]!)}"`);
    if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
    return parts.length ? `{${parts.join(",")}}` : "";
  }
}

/** What every instrument shares. */
abstract class Instrument<T> {
  readonly name: string;
  readonly help: string;
  abstract readonly type: "counter" | "gauge" | "histogram";
  protected readonly series: Series<T>;

  constructor(name: string, help: string, labelNames: readonly string[]) {
    if (!NAME.test(name)) throw new TypeError(`Invalid metric name "${name}"`);
    this.name = name;
    this.help = help;
    this.series = new Series<T>(name, labelNames);
  }

  /** The exposition lines of this instrument's samples. */
  abstract lines(): string[];
}

/** A value that only goes up (`_total`). */
export class Counter extends Instrument<{ n: number }> {
  /** Always `"counter"`. */
  readonly type = "counter" as const;

  /** Makes the series of `labels` appear (at 0) before anything is counted in it. */
  init(labels: Labels = {}): this {
    this.series.entry(labels, () => ({ n: 0 }));
    return this;
  }

  /** Adds `by` (default 1, never negative) to the series of `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new RangeError(`Counter "${this.name}" cannot go down by ${by}`);
    this.series.entry(labels, () => ({ n: 0 })).value.n += by;
  }

  /** The current value of the series of `labels` (0 when never increased). */
  value(labels: Labels = {}): number {
    return this.series.find(labels)?.n ?? 0;
  }

  /** The exposition lines. */
  lines(): string[] {
    return [...this.series.values.values()].map((e) =>
      `${this.name}${this.series.render(e.labels)} ${formatValue(e.value.n)}`
    );
  }
}

/** A value that goes up and down, set as it changes or read fresh before each scrape. */
export class Gauge extends Instrument<{ n: number }> {
  /** Always `"gauge"`. */
  readonly type = "gauge" as const;

  /** Sets the series of `labels`. */
  set(labels: Labels, value: number): void {
    this.series.entry(labels, () => ({ n: 0 })).value.n = value;
  }

  /** Replaces every series with `values` (series missing from it are dropped). */
  replace(values: Iterable<[Labels, number]>): void {
    this.series.values.clear();
    for (const [labels, n] of values) this.set(labels, n);
  }

  /** The current value of the series of `labels` (0 when never set). */
  value(labels: Labels = {}): number {
    return this.series.find(labels)?.n ?? 0;
  }

  /** The exposition lines. */
  lines(): string[] {
    return [...this.series.values.values()].map((e) =>
      `${this.name}${this.series.render(e.labels)} ${formatValue(e.value.n)}`
    );
  }
}

/** What a histogram series holds: counts per bucket (not cumulative), the sum and the count. */
export interface HistogramSnapshot {
  /** Upper bounds of the buckets, ascending; `+Inf` is implied. */
  buckets: readonly number[];
  /** Observations per bucket, not cumulative; one more entry than `buckets` (the `+Inf` one). */
  counts: number[];
  /** Sum of the observations. */
  sum: number;
  /** Number of observations. */
  count: number;
}

/** Observations counted in buckets (`_bucket`, `_sum`, `_count`). */
export class Histogram extends Instrument<HistogramSnapshot> {
  /** Always `"histogram"`. */
  readonly type = "histogram" as const;
  readonly #buckets: readonly number[];

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) {
        throw new RangeError(`Buckets of histogram "${name}" must increase`);
      }
    }
    this.#buckets = buckets;
  }

  #make = (): HistogramSnapshot => ({
    buckets: this.#buckets,
    counts: new Array<number>(this.#buckets.length + 1).fill(0),
    sum: 0,
    count: 0,
  });

  /** Makes the series of `labels` appear (empty) before anything is observed in it. */
  init(labels: Labels = {}): this {
    this.series.entry(labels, this.#make);
    return this;
  }

  /** Records `value` in the series of `labels`. */
  observe(labels: Labels, value: number): void {
    const s = this.series.entry(labels, this.#make).value;
    const b = this.#buckets;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (value <= b[mid]!) hi = mid;
      else lo = mid + 1;
    }
    s.counts[lo]!++;
    s.sum += value;
    s.count++;
  }

  /** A copy of the series of `labels` (all zero when never observed). */
  snapshot(labels: Labels = {}): HistogramSnapshot {
    const s = this.series.find(labels) ?? this.#make();
    return { buckets: s.buckets, counts: [...s.counts], sum: s.sum, count: s.count };
  }

  /** The label values of every series observed so far, in their declared order. */
  labelSets(): string[][] {
    return [...this.series.values.values()].map((e) => [...e.labels]);
  }

  /** The exposition lines. */
  lines(): string[] {
    const out: string[] = [];
    for (const e of this.series.values.values()) {
      let cumulative = 0;
      this.#buckets.forEach((le, i) => {
        cumulative += e.value.counts[i]!;
        out.push(
          `${this.name}_bucket${
            this.series.render(e.labels, ["le", formatValue(le)])
          } ${cumulative}`,
        );
      });
      out.push(
        `${this.name}_bucket${this.series.render(e.labels, ["le", "+Inf"])} ${e.value.count}`,
      );
      out.push(`${this.name}_sum${this.series.render(e.labels)} ${formatValue(e.value.sum)}`);
      out.push(`${this.name}_count${this.series.render(e.labels)} ${e.value.count}`);
    }
    return out;
  }
}

/** Options of {@linkcode MetricsRegistry.histogram}. */
export interface HistogramOptions {
  /** Label names. @default none */
  labelNames?: readonly string[];
  /** Bucket upper bounds. @default {@linkcode LATENCY_BUCKETS} */
  buckets?: readonly number[];
}

/**
 * Named instruments and their exposition. Collectors run before each render, to read gauges that
 * are cheaper to read on a scrape than to keep up to date (store counts, queue depths).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MetricsRegistry } from "./_metrics.ts";
 * const r = new MetricsRegistry();
 * const done = r.counter("jobs_done_total", "Jobs done", ["outcome"]);
 * done.inc({ outcome: "ok" }, 2);
 * assert.match(await r.render(), /^jobs_done_total\{outcome="ok"\} 2$/m);
 * ```
 */
export class MetricsRegistry {
  readonly #instruments = new Map<string, Instrument<unknown>>();
  readonly #collectors: Array<() => void | Promise<void>> = [];

  #add<T extends Instrument<unknown>>(i: T): T {
    if (this.#instruments.has(i.name)) {
      throw new TypeError(`Metric "${i.name}" is registered twice`);
    }
    this.#instruments.set(i.name, i);
    return i;
  }

  /** Registers a counter; its name should end in `_total`. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    const c = this.#add(new Counter(name, help, labelNames));
    return labelNames.length === 0 ? c.init() : c;
  }

  /** Registers a gauge. */
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames));
  }

  /** Registers a histogram. */
  histogram(name: string, help: string, options: HistogramOptions = {}): Histogram {
    const labelNames = options.labelNames ?? [];
    const h = this.#add(
      new Histogram(name, help, labelNames, options.buckets ?? LATENCY_BUCKETS),
    );
    return labelNames.length === 0 ? h.init() : h;
  }

  /** Runs `fn` before every render (to set gauges); a collector that throws fails the render. */
  collect(fn: () => void | Promise<void>): void {
    this.#collectors.push(fn);
  }

  /** The text exposition of every instrument, after the collectors ran. */
  async render(): Promise<string> {
    for (const c of this.#collectors) await c();
    const out: string[] = [];
    for (const i of this.#instruments.values()) {
      out.push(`# HELP ${i.name} ${escapeHelp(i.help)}`, `# TYPE ${i.name} ${i.type}`);
      out.push(...i.lines());
    }
    return out.join("\n") + "\n";
  }
}

/**
 * Registers `process_start_time_seconds` and `process_resident_memory_bytes` (the names every
 * Prometheus client uses) in `registry`.
 */
export function addProcessMetrics(registry: MetricsRegistry): void {
  const start = registry.gauge("process_start_time_seconds", "Start time of the process (epoch s)");
  start.set({}, Math.round((Date.now() - performance.now()) / 1000));
  const rss = registry.gauge("process_resident_memory_bytes", "Resident memory size in bytes");
  registry.collect(() => rss.set({}, Deno.memoryUsage().rss));
}
