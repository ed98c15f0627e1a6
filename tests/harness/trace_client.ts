/**
 * A script for the trace test: submits `n` tasks (one of them fails) through `FuncXExecutor` to
 * endpoint `<id>` of the service named by `FUNCX_SERVICE_ADDRESS` (and the client login in the
 * environment), waits for all of them, and prints their task ids as JSON. It is its own process
 * because Deno turns its OpenTelemetry on (`OTEL_DENO`) only at start.
 *
 * Usage: `deno run -A tests/harness/trace_client.ts <endpoint id> <n>`
 *
 * @module
 */
import { FuncXExecutor } from "../../mod.ts";

const [endpointId, count] = Deno.args;
if (!endpointId || !count) throw new TypeError("Usage: trace_client.ts <endpoint id> <n>");
await using fx = new FuncXExecutor({ endpointId });
const square = (x: number) => {
  if (x === 2) throw new RangeError(`no square for ${x}`);
  return x * x;
};
const futures = Array.from({ length: Number(count) }, (_, i) => fx.submit(square, i));
const settled = await Promise.allSettled(futures);
console.log(JSON.stringify({
  taskIds: futures.map((f) => f.taskId),
  failed: settled.filter((s) => s.status === "rejected").length,
}));
