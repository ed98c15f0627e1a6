/**
 * The endpoint daemon against a broker it reaches through a proxy in this test, so the link can
 * be frozen (bytes dropped both ways: a publish is never confirmed, an ack never arrives) or
 * refused (every connect fails with ECONNREFUSED), with the real service and broker behind it:
 * the daemon outlasts an outage longer than any old retry limit, and a task that finished just
 * before a SIGKILL of the daemon is not run again after `start`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { clientOf, createVhost, deleteVhost, sharedBroker, startService } from "./harness/stack.ts";
import { waitForResult } from "./harness/wait.ts";
import {
  cli,
  fastConfig,
  processesMentioning,
  processGroup,
  until,
  writeConfig,
} from "./_endpoint_helpers.ts";

/** A TCP proxy that can freeze its links (drop every byte both ways) or refuse connections. */
class HoldingProxy {
  readonly port: number;
  readonly #targetPort: number;
  #listener: Deno.TcpListener | undefined;
  readonly #links = new Set<{ a: Deno.TcpConn; b: Deno.TcpConn; frozen: boolean }>();

  constructor(targetPort: number) {
    this.#targetPort = targetPort;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    void this.#accept(this.#listener);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const a of listener) void this.#link(a).catch(() => a.close());
    } catch {
      // refused or closed
    }
  }

  async #link(a: Deno.TcpConn): Promise<void> {
    {
      const b = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
      a.setNoDelay(true);
      b.setNoDelay(true);
      const link = { a, b, frozen: false };
      this.#links.add(link);
      const end = () => {
        this.#links.delete(link);
        for (const c of [a, b]) {
          try {
            c.close();
          } catch {
            // closed
          }
        }
      };
      void this.#pump(a, b, link).catch(() => {}).finally(end);
      void this.#pump(b, a, link).catch(() => {}).finally(end);
    }
  }

  async #pump(from: Deno.TcpConn, to: Deno.TcpConn, link: { frozen: boolean }): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await from.read(buf).catch(() => null);
      if (n === null) return;
      // A frozen link stays open but carries nothing; a peer that closes still ends it.
      if (link.frozen) continue;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  }

  /** From now on the live links drop every byte, both ways (new links work). */
  freeze(): void {
    for (const link of this.#links) link.frozen = true;
  }

  /** Closes every link and stops listening: connects fail with ECONNREFUSED. */
  refuse(): void {
    this.#listener?.close();
    this.#listener = undefined;
    for (const { a, b } of this.#links) {
      for (const c of [a, b]) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
    }
  }

  /** Listens again on the same port. */
  accept(): void {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: this.port });
    void this.#accept(this.#listener);
  }

  close(): void {
    this.refuse();
  }
}

/** A service whose endpoints reach the broker through a {@linkcode HoldingProxy}. */
async function proxiedEnv() {
  const access = await sharedBroker();
  const dir = await Deno.makeTempDir({ prefix: "funcx-outage-test-" });
  const vhost = `outage-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(access, vhost);
  const url = new URL(amqpUrl);
  const proxy = new HoldingProxy(Number(url.port || 5672));
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  const service = await startService({
    dir,
    amqpUrl,
    args: ["--public-amqp-url", url.toString()],
  });
  const configDir = join(dir, "config");
  const env = { ...service.env, FUNCX_CONFIG_DIR: configDir, NO_COLOR: "1" };
  return {
    dir,
    configDir,
    proxy,
    client: clientOf(service),
    cli: (args: string[]) => cli(args, env),
    async [Symbol.asyncDispose]() {
      for (const pid of processesMentioning(dir)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      proxy.close();
      await service.process.stop();
      await deleteVhost(access, vhost).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** The default retry policy (no max_consecutive_failures) with test-sized delays. */
function foreverConfig(): string {
  return fastConfig().replace("max_consecutive_failures: 20\n", "");
}

Deno.test("endpoint outlasts a broker outage by default, keeping its tasks and results", async () => {
  await using s = await proxiedEnv();
  assert.equal((await s.cli(["configure", "patient"])).code, 0);
  await writeConfig(s.configDir, "patient", foreverConfig());
  const start = await s.cli(["start", "patient"]);
  assert.equal(start.code, 0, start.stderr);
  const epId = /registered ID: (\S+)/.exec(start.stdout)![1]!;
  const epDir = join(s.configDir, "patient");
  const log = () => Deno.readTextFile(join(epDir, "endpoint.log"));
  const pid = Number(await Deno.readTextFile(join(epDir, "daemon.pid")));

  const gate = join(s.dir, "gate");
  const fn = await s.client.registerFunctionSource(
    "gated",
    `async function gated(x) {
      await Deno.writeTextFile(${JSON.stringify(gate + ".started")}, "");
      for (;;) {
        try { await Deno.stat(${JSON.stringify(gate)}); break; }
        catch { await new Promise((r) => setTimeout(r, 50)); }
      }
      return x + 1;
    }`,
  );
  const id = await s.client.run(fn, epId, { args: [41] });
  await until("the task to run", async () => await exists(gate + ".started"));

  s.proxy.refuse();
  try {
    // Past the old default of 5 attempts, and the task finishes while the broker is away.
    await until(
      "retry 8",
      async () => /Broker at \S+ unreachable \(.+\); retry 8 in /.test(await log()),
    );
    assert.match((await s.cli(["list"])).stdout, /Reconnecting/);
    await Deno.writeTextFile(gate, "");
    await until(
      "the result to wait on disk",
      async () => /unreachable .*; 1 results waiting on disk, 0 tasks running/.test(await log()),
    );
    assert.ok(processGroup(pid).includes(pid), "the daemon exited during the outage");
  } catch (err) {
    console.error(await log());
    throw err;
  }

  s.proxy.accept();
  assert.equal(await waitForResult(s.client, id, 60_000), 42);
  await until("list to say Running", async () => /Running/.test((await s.cli(["list"])).stdout));
  assert.equal(Number(await Deno.readTextFile(join(epDir, "daemon.pid"))), pid);
  assert.equal((await s.cli(["stop", "patient"])).code, 0);
});

Deno.test("endpoint does not rerun a task that finished just before the daemon was SIGKILLed", async () => {
  await using s = await proxiedEnv();
  assert.equal((await s.cli(["configure", "main"])).code, 0);
  await writeConfig(s.configDir, "main", foreverConfig());
  const start = await s.cli(["start", "main"]);
  assert.equal(start.code, 0, start.stderr);
  const epId = /registered ID: (\S+)/.exec(start.stdout)![1]!;
  const epDir = join(s.configDir, "main");

  const gate = join(s.dir, "gate");
  const sideEffect = join(s.dir, "ran.txt");
  const fn = await s.client.registerFunctionSource(
    "oncePlease",
    `async function oncePlease(x) {
      await Deno.writeTextFile(${JSON.stringify(sideEffect + ".started")}, "");
      for (;;) {
        try { await Deno.stat(${JSON.stringify(gate)}); break; }
        catch { await new Promise((r) => setTimeout(r, 20)); }
      }
      await Deno.writeTextFile(${JSON.stringify(sideEffect)}, "ran\\n", { append: true });
      return x * 3;
    }`,
  );
  const id = await s.client.run(fn, epId, { args: [14] });
  await until("the task to start", () => exists(sideEffect + ".started"));
  // From here on the broker sees neither the result nor the ack: only the journal can save it.
  s.proxy.freeze();
  await Deno.writeTextFile(gate, "");
  const journalDir = join(epDir, "result_journal");
  const idBytes = new TextEncoder().encode(id);
  await until("the result in the journal", async () => {
    for await (const e of Deno.readDir(journalDir)) {
      const bytes = await Deno.readFile(join(journalDir, e.name));
      if (indexOf(bytes, idBytes) >= 0) return true;
    }
    return false;
  });
  const pid = Number(await Deno.readTextFile(join(epDir, "daemon.pid")));
  Deno.kill(pid, "SIGKILL");
  await until("the daemon's group to end", () => processGroup(pid).length === 0, 60);
  assert.ok((await s.client.getTask(id)).pending, "the result got through despite the hold");

  const again = await s.cli(["start", "main"]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(await waitForResult(s.client, id, 60_000), 42);
  // The broker gives the unacked task back; the daemon acks it without running it.
  await until(
    "the redelivered task to be acked, not run",
    async () =>
      new RegExp(`Task "?${id}"? was delivered again but already ran here`).test(
        await Deno.readTextFile(join(epDir, "endpoint.log")),
      ),
  );
  assert.equal(await Deno.readTextFile(sideEffect), "ran\n");
  assert.equal((await s.cli(["stop", "main"])).code, 0);
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
