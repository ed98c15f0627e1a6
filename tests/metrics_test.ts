/**
 * Metrics end to end: a real service (with a metrics token) and a real endpoint daemon (with
 * `metrics_port`) run a known workload, a private Prometheus scrapes both every second, and the
 * numbers are read back through Prometheus's query API: tasks by state, submits and results,
 * the round-trip and hop histograms, workers and queues, reconnects and failed sign-ins.
 * `promtool check metrics` accepts both expositions.
 */
import assert from "node:assert/strict";
import { packArgs } from "../sdk/protocol/mod.ts";
import { api } from "./harness/http.ts";
import { PrometheusServer, promtoolCheckMetrics } from "./harness/prometheus.ts";
import {
  clientOf,
  createVhost,
  deleteVhost,
  type EndpointHandle,
  type ServiceHandle,
  sharedBroker,
  startEndpoint,
  startService,
} from "./harness/stack.ts";
import { dropConnections, dropEndpointConnections } from "./_endpoint_helpers.ts";
import { until } from "./harness/until.ts";

const METRICS_TOKEN = "metrics-token-for-the-test";
const TASKS = 20;
const FAILING = 5; // i % 4 === 0 for i in 0..19

Deno.test("metrics: Prometheus scrapes the service and the endpoint and sees a known workload", async (t) => {
  const access = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-metrics-" });
  const vhost = `metrics-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(access, vhost);
  let service: ServiceHandle | undefined;
  let endpoint: EndpointHandle | undefined;
  let prom: PrometheusServer | undefined;
  try {
    service = await startService({
      dir,
      amqpUrl,
      broker: access,
      args: ["--metrics-token", METRICS_TOKEN],
    });
    endpoint = await startEndpoint({
      service,
      dir,
      workers: 2,
      config: {
        metrics_port: 0,
        heartbeat_period: 1,
        reconnect_delay_min: 0.2,
        reconnect_delay_max: 0.5,
      },
    });
    const serviceMetrics = `${service.address}/metrics`;
    const endpointMetrics = String(endpoint.process.ready["metrics"]);
    assert.match(endpointMetrics, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

    await t.step("the service's /metrics asks for the token when one is set", async () => {
      const open = await fetch(serviceMetrics);
      await open.body?.cancel();
      assert.equal(open.status, 401);
      const wrong = await fetch(serviceMetrics, { headers: { authorization: "Bearer nope" } });
      await wrong.body?.cancel();
      assert.equal(wrong.status, 401);
      const right = await fetch(serviceMetrics, {
        headers: { authorization: `Bearer ${METRICS_TOKEN}` },
      });
      assert.equal(right.status, 200);
      assert.match(right.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      assert.match(await right.text(), /^funcx_tasks_submitted_total 0$/m);
      const other = await fetch(endpointMetrics.replace(/\/metrics$/, "/other"));
      await other.body?.cancel();
      assert.equal(other.status, 404);
    });

    prom = await PrometheusServer.start([
      { job: "service", url: serviceMetrics, bearerToken: METRICS_TOKEN },
      { job: "endpoint", url: endpointMetrics },
    ]);
    const p = prom;
    await p.waitFor('up{job="service"}', (n) => n === 1);
    await p.waitFor('up{job="endpoint"}', (n) => n === 1);

    await t.step("a workload of 20 tasks, 5 failing, is counted on both sides", async () => {
      const fx = clientOf(service!);
      const fnId = await fx.registerFunction((i: number) => {
        if (i % 4 === 0) throw new Error(`task ${i} fails on purpose`);
        return i * 2;
      });
      const res = await fx.submit(
        Array.from(
          { length: TASKS },
          (_, i) => [fnId, endpoint!.endpointId, packArgs([i])] as [string, string, string],
        ),
      );
      const ids = res.results.map((r) => r.task_uuid!);
      assert.equal(ids.length, TASKS);
      const done = await until(
        "all results",
        async () => {
          const b = await fx.getBatchResult(ids);
          const all = [...b.values()];
          return all.every((r) => !r.pending) && all;
        },
        60_000,
        200,
      );
      assert.equal(done.filter((r) => r.status === "failed").length, FAILING);

      const eq = (n: number) => (v: number) => v === n;
      await p.waitFor('funcx_tasks_submitted_total{job="service"}', eq(TASKS));
      await p.waitFor('funcx_results_total{job="service",outcome="success"}', eq(TASKS - FAILING));
      await p.waitFor('funcx_results_total{job="service",outcome="failed"}', eq(FAILING));
      await p.waitFor('funcx_tasks{job="service",state="success"}', eq(TASKS - FAILING));
      await p.waitFor('funcx_tasks{job="service",state="failed"}', eq(FAILING));
      await p.waitFor('funcx_tasks{job="service",state="waiting-for-ep"}', eq(0));
      await p.waitFor('funcx_outbox_messages{job="service"}', eq(0));
      await p.waitFor("rate(funcx_tasks_submitted_total[1m])", (v) => v > 0);
      await p.waitFor('funcx_task_round_trip_seconds_count{job="service"}', eq(TASKS));
      await p.waitFor(
        'funcx_task_round_trip_seconds_bucket{job="service",le="+Inf"}',
        eq(TASKS),
      );
      // Every task's trip starts at the submit and ends where the service stored its result.
      await p.waitFor(
        'sum(funcx_task_hop_seconds_count{job="service",from="submitted"})',
        eq(TASKS),
      );
      await p.waitFor(
        'sum(funcx_task_hop_seconds_count{job="service",to="result-received"})',
        eq(TASKS),
      );
      const roundTrip = await p.waitFor(
        'funcx_task_round_trip_seconds_sum{job="service"}',
        (v) => v > 0,
      );
      assert.ok(roundTrip < 60 * TASKS, `round trips summed to ${roundTrip} s`);

      await p.waitFor('funcx_endpoint_tasks_received_total{job="endpoint"}', eq(TASKS));
      await p.waitFor(
        'funcx_endpoint_results_total{job="endpoint",outcome="success"}',
        eq(TASKS - FAILING),
      );
      await p.waitFor('funcx_endpoint_results_total{job="endpoint",outcome="failed"}', eq(FAILING));
      await p.waitFor('funcx_endpoint_results_published_total{job="endpoint"}', eq(TASKS));
      await p.waitFor('funcx_endpoint_task_seconds_count{job="endpoint"}', eq(TASKS));
      await p.waitFor(
        'sum(funcx_endpoint_task_hop_seconds_count{job="endpoint",from="received"})',
        eq(TASKS),
      );
      await p.waitFor('sum(funcx_endpoint_workers{job="endpoint"})', eq(2));
      await p.waitFor('funcx_endpoint_workers{job="endpoint",state="busy"}', eq(0));
      await p.waitFor('funcx_endpoint_queue_depth{job="endpoint",queue="interchange"}', eq(0));
      await p.waitFor('funcx_endpoint_queue_depth{job="endpoint",queue="unacked"}', eq(0));
      await p.waitFor('funcx_endpoint_tasks{job="endpoint",state="running"}', eq(0));
      await p.waitFor('funcx_endpoint_blocks{job="endpoint",state="running"}', eq(1));
      await p.waitFor('funcx_endpoint_connected{job="endpoint"}', eq(1));
      await p.waitFor(
        `funcx_endpoint_info{job="endpoint",endpoint_id="${endpoint!.endpointId}"}`,
        eq(1),
      );
    });

    await t.step("failed sign-ins and refused tokens are counted", async () => {
      for (let i = 0; i < 2; i++) {
        const a = await api(service!.address, "POST", "/v2/oauth/token", {
          form: {
            grant_type: "client_credentials",
            client_id: service!.clientId,
            client_secret: "not-the-secret",
          },
        });
        assert.equal(a.status, 401);
      }
      for (let i = 0; i < 3; i++) {
        assert.equal(
          (await api(service!.address, "GET", "/v2/whoami", { token: "garbage" })).status,
          401,
        );
      }
      assert.equal((await api(service!.address, "GET", "/v2/whoami")).status, 401);
      await p.waitFor(
        'funcx_sign_in_failures_total{job="service",kind="client",reason="bad_secret"}',
        (v) => v === 2,
      );
      await p.waitFor(
        'funcx_token_rejections_total{job="service",reason="invalid"}',
        (v) => v === 3,
      );
      await p.waitFor(
        'funcx_token_rejections_total{job="service",reason="missing"}',
        (v) => v === 1,
      );
    });

    await t.step("broker reconnects of the service and of the endpoint are counted", async () => {
      assert.equal(await p.query('funcx_broker_reconnects_total{job="service"}'), 0);
      assert.equal(await p.query('funcx_endpoint_reconnects_total{job="endpoint"}'), 0);
      assert.ok(await dropConnections(access, vhost, "funcx-service") >= 1);
      assert.ok(await dropEndpointConnections(access, vhost) >= 1);
      await p.waitFor('funcx_broker_reconnects_total{job="service"}', (v) => v >= 1);
      await p.waitFor('funcx_broker_connected{job="service"}', (v) => v === 1);
      await p.waitFor('funcx_endpoint_reconnects_total{job="endpoint"}', (v) => v >= 1);
      await p.waitFor('funcx_endpoint_connected{job="endpoint"}', (v) => v === 1);
    });

    await t.step("promtool check metrics accepts both expositions", async () => {
      const texts = [
        await (await fetch(serviceMetrics, {
          headers: { authorization: `Bearer ${METRICS_TOKEN}` },
        })).text(),
        await (await fetch(endpointMetrics)).text(),
      ];
      for (const text of texts) {
        const check = await promtoolCheckMetrics(text);
        assert.equal(check.code, 0, `promtool check metrics: ${check.out}\n${text}`);
      }
      // A broken exposition is refused, so the check above can fail.
      assert.notEqual((await promtoolCheckMetrics("funcx_x_total 1\n")).code, 0);
    });
  } finally {
    await prom?.stop();
    await endpoint?.process.stop();
    await service?.process.stop();
    await deleteVhost(access, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
