/**
 * An OTLP/HTTP receiver for tests: a small HTTP server on 127.0.0.1 that takes `POST /v1/traces`
 * in OTLP's JSON encoding (processes export to it with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`)
 * and keeps every span it is sent, with the `service.name` of the process that sent it. Anything
 * else (protobuf included) is answered 415 and recorded as an error, so a test sees it.
 *
 * @module
 */

/** A span as received. */
export interface ReceivedSpan {
  /** `service.name` of the process that exported it. */
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, string | number | boolean>;
}

/** A running receiver. */
export interface OtlpReceiver extends AsyncDisposable {
  /** Its base address, for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  url: string;
  /** The spans received so far. */
  spans: ReceivedSpan[];
  /** Requests it could not take, described. */
  errors: string[];
  /** The environment that makes a Deno process export its spans here as `service`. */
  env(service: string): Record<string, string>;
}

type AnyValue = {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
};

function value(v: AnyValue | undefined): string | number | boolean {
  if (!v) return "";
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  return "";
}

function attributes(
  list: Array<{ key: string; value?: AnyValue }> | undefined,
): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((a) => [a.key, value(a.value)]));
}

interface ExportRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value?: AnyValue }> };
    scopeSpans?: Array<{
      spans?: Array<{
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
        attributes?: Array<{ key: string; value?: AnyValue }>;
      }>;
    }>;
  }>;
}

/** Starts a receiver on a free port of 127.0.0.1. */
export function startOtlpReceiver(): OtlpReceiver {
  const spans: ReceivedSpan[] = [];
  const errors: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const type = req.headers.get("content-type") ?? "";
    if (req.method !== "POST" || path !== "/v1/traces" || !type.includes("application/json")) {
      errors.push(`${req.method} ${path} (${type})`);
      await req.body?.cancel();
      return new Response("only POST /v1/traces in JSON", { status: 415 });
    }
    const body = await req.json() as ExportRequest;
    for (const rs of body.resourceSpans ?? []) {
      const service = String(attributes(rs.resource?.attributes)["service.name"] ?? "");
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          spans.push({
            service,
            name: s.name,
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? "",
            startNs: BigInt(s.startTimeUnixNano),
            endNs: BigInt(s.endTimeUnixNano),
            attributes: attributes(s.attributes),
          });
        }
      }
    }
    return Response.json({});
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    url,
    spans,
    errors,
    env: (service) => ({
      OTEL_DENO: "true",
      OTEL_SERVICE_NAME: service,
      OTEL_EXPORTER_OTLP_ENDPOINT: url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_DENO_CONSOLE: "ignore",
      OTEL_DENO_METRICS: "false",
    }),
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}
