/**
 * The soak's verdict (`bench/soak.ts`) on made-up samples: memory growth is judged at 5 MiB/h
 * only over a long enough window, each life of the restarted endpoint apart; descriptors, queue
 * depths, the store and wrong outcomes fail it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type SoakSample, trend, verdict } from "../bench/soak.ts";

function samples(minutes: number, rss: (t: number) => number, extra: Partial<SoakSample> = {}) {
  return Array.from({ length: minutes + 1 }, (_, m): SoakSample => ({
    t: m * 60,
    rssMiB: { service: rss(m * 60), endpoint: 80 },
    fds: { service: 30, endpoint: 40 },
    endpointRun: 1 + Math.floor(m / 10),
    storeBytes: 1,
    storeTasks: 10,
    storeBound: 100,
    queues: { results: 0 },
    brokerMemMiB: 100,
    ...extra,
  }));
}

const base = {
  minutes: 60,
  rate: 4,
  taskTtlS: 600,
  warmupS: 600,
  submitted: { noop: 1 },
  wrong: [],
  reloads: { runs: 1, problems: [] },
  endpointRestarts: 5,
};

Deno.test("trend gives the least-squares slope in MiB/h and the growth over the span", () => {
  const g = trend([[0, 100], [1800, 101], [3600, 102]]);
  assert.ok(Math.abs(g.mibPerHour - 2) < 1e-9);
  assert.ok(Math.abs(g.mib - 2) < 1e-9);
});

Deno.test("verdict passes flat memory and fails 12 MiB/h over 50 minutes", () => {
  assert.deepEqual(verdict({ ...base, samples: samples(60, () => 100) }).problems, []);
  const leak = verdict({ ...base, samples: samples(60, (t) => 100 + (12 * t) / 3600) });
  assert.equal(leak.passed, false);
  assert.match(leak.problems.join(), /service memory grows 12\.0 MiB\/h/);
  assert.equal(leak.growth["service"]?.judged, true);
});

Deno.test("verdict holds a short window only to its ceiling, and judges other failures", () => {
  const short = { ...base, minutes: 3, warmupS: 60 };
  const swing = verdict({ ...short, samples: samples(3, (t) => 100 + t / 20) });
  assert.deepEqual(swing.problems, []);
  assert.equal(swing.growth["service"]?.judged, false);
  const fds = samples(3, () => 100);
  fds[3]!.fds = { service: 50, endpoint: 40 };
  assert.match(verdict({ ...short, samples: fds }).problems.join(), /descriptors grew from 30/);
  const store = samples(3, () => 100, { storeTasks: 500 });
  assert.match(verdict({ ...short, samples: store }).problems.join(), /store held 500 tasks/);
  const wrong = verdict({ ...short, wrong: ["fail 3: got 3"], samples: samples(3, () => 100) });
  assert.match(wrong.problems.join(), /1 tasks ended wrongly/);
});

Deno.test("verdict: work queues must stay flat; result streams only by their level", () => {
  const withQueues = (q: (m: number) => Record<string, number>) =>
    samples(60, () => 100).map((s, m) => ({ ...s, queues: q(m) }));
  // A result stream backlog that swings from 0 to 500 and back, at the same level all along.
  const swinging = withQueues((m) => ({ results: 0, "result streams": (m * 97) % 500 }));
  assert.deepEqual(verdict({ ...base, samples: swinging }).problems, []);
  // One that climbs the whole run: copies left on queues that never expire.
  const climbing = withQueues((m) => ({ results: 0, "result streams": m * 40 }));
  assert.match(
    verdict({ ...base, samples: climbing }).problems.join(),
    /result stream queues grew from \d+ to \d+ messages on average/,
  );
  // The results queue is work: from 0 to 300 fails whatever the streams do.
  const backlog = withQueues((m) => ({ results: m * 5, "result streams": 0 }));
  assert.match(
    verdict({ ...base, samples: backlog }).problems.join(),
    /queue depths grew from 50 to 300 messages/,
  );
});
