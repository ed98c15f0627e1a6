/**
 * One task, one trace: the hops of a task's trip as OpenTelemetry spans, linked by W3C trace
 * context (`traceparent`) that travels inside the messages themselves (the submit entry, the
 * `task` and `result` messages), since tasks and results cross the broker in batches of many
 * tasks per AMQP message and a task waits in the service's outbox as bytes before it is sent.
 *
 * Off by default. On Deno it is on when `OTEL_DENO` is `true` (Deno's built-in OpenTelemetry
 * exports the spans over OTLP); on Node when `OTEL_TRACES_EXPORTER` names an exporter and
 * `@opentelemetry/api` is installed (an optional peer; the program registers its own provider).
 * When off nothing is loaded and every helper here returns at its first test of
 * {@linkcode TRACING}. Spans are made with explicit start and end times, so a hop measured in
 * another process (a worker's run) or before the API finished loading is still exact.
 *
 * @module
 */
import process from "node:process";
import type * as otel from "@opentelemetry/api";

function wanted(): boolean {
  try {
    // Deno turns its OpenTelemetry on for exactly "true" (and warns about anything else).
    if ("Deno" in globalThis) return process.env.OTEL_DENO === "true";
    const exporter = process.env.OTEL_TRACES_EXPORTER;
    return exporter !== undefined && exporter !== "" && exporter !== "none";
  } catch {
    return false; // no permission to read the environment: off
  }
}

/** Whether this process traces tasks (decided once, at start). */
export const TRACING: boolean = wanted();

let api: typeof otel | undefined;
let tracer: otel.Tracer | undefined;

const loaded: Promise<boolean> = TRACING
  ? import("@opentelemetry/api").then(
    (m) => {
      api = m;
      tracer = m.trace.getTracer("funcx");
      return true;
    },
    (err) => {
      console.warn(`Tracing is off: cannot load @opentelemetry/api (${String(err)})`);
      return false;
    },
  )
  : Promise.resolve(false);

/** Resolves once spans can be made (at once, `false`, when tracing is off). */
export function tracingReady(): Promise<boolean> {
  return loaded;
}

/** A time: ms since the epoch (a `number`) or ns since the epoch (a `bigint`). */
export type SpanTime = number | bigint;

function hrTime(t: SpanTime): otel.HrTime {
  if (typeof t === "bigint") return [Number(t / 1_000_000_000n), Number(t % 1_000_000_000n)];
  const s = Math.floor(t / 1000);
  return [s, Math.round((t - s * 1000) * 1e6)];
}

/** The wall clock in ms since the epoch, to below a ms. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * A span's context from a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), or undefined for
 * anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTraceparent } from "./_tracing.ts";
 * const ctx = parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
 * assert.equal(ctx?.spanId, "b7ad6b7169203331");
 * assert.equal(parseTraceparent("junk"), undefined);
 * ```
 */
export function parseTraceparent(
  value: string | null | undefined,
): { traceId: string; spanId: string; traceFlags: number } | undefined {
  const m = value ? TRACEPARENT.exec(value) : null;
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) };
}

/** One hop of a task's trip, as a span. */
export interface Hop {
  /** Its W3C `traceparent`: what the next hop names as its parent. */
  readonly traceparent: string;
  /** Sets an attribute of the span. */
  attr(key: string, value: string | number | boolean): void;
  /** Ends the span at `at` (default: now); later calls do nothing. */
  end(at?: SpanTime): void;
}

const held = new WeakMap<object, Hop>();

/** Keeps `hop` with `owner` (a future) for a later hop of the same task to find. */
export function holdHop(owner: object, hop: Hop): void {
  held.set(owner, hop);
}

/** The hop kept with `owner`, if any. */
export function heldHop(owner: object): Hop | undefined {
  return held.get(owner);
}

/**
 * Starts the span of hop `name` at `start` (default: now), a child of `parent` (a `traceparent`
 * or another hop; none starts a trace). Undefined when tracing is off or not loaded yet.
 */
export function startHop(
  name: string,
  parent: string | Hop | null | undefined,
  start?: SpanTime,
  attributes?: Record<string, string | number | boolean>,
): Hop | undefined {
  if (!TRACING || !api || !tracer) return undefined;
  const remote = parseTraceparent(typeof parent === "string" ? parent : parent?.traceparent);
  const ctx = remote
    ? api.trace.setSpanContext(api.ROOT_CONTEXT, { ...remote, isRemote: true })
    : api.ROOT_CONTEXT;
  const span = tracer.startSpan(name, {
    startTime: hrTime(start ?? nowMs()),
    ...(attributes ? { attributes } : {}),
    ...(remote ? {} : { root: true }),
  }, ctx);
  const sc = span.spanContext();
  const flags = (sc.traceFlags & 0xff).toString(16).padStart(2, "0");
  let open = true;
  return {
    traceparent: `00-${sc.traceId}-${sc.spanId}-${flags}`,
    attr: (key, value) => void span.setAttribute(key, value),
    end: (at) => {
      if (open) span.end(hrTime(at ?? nowMs()));
      open = false;
    },
  };
}

/** Records a hop whose start and end are both known already. */
export function recordHop(
  name: string,
  parent: string | Hop | null | undefined,
  start: SpanTime,
  end: SpanTime,
  attributes?: Record<string, string | number | boolean>,
): Hop | undefined {
  const hop = startHop(name, parent, start, attributes);
  hop?.end(end);
  return hop;
}
