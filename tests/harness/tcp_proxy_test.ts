/**
 * Tests of the fault-injecting TCP proxy against a real echo server on 127.0.0.1: bytes go
 * through both ways, a cut ends live connections on both sides, new connections are dropped or
 * refused while cut, and the proxy forwards again after `restore()` or the cut's time is up.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TcpProxy } from "./tcp_proxy.ts";
import { until } from "./until.ts";

/** An echo server that counts the connections it has open. */
function echoServer(): { port: number; open: () => number; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const serve = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        const t = (async () => {
          const buf = new Uint8Array(1024);
          try {
            for (let n; (n = await conn.read(buf)) !== null;) await conn.write(buf.subarray(0, n));
          } catch {
            // closed under us
          }
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // already closed
          }
        })();
        tasks.add(t);
      }
    } catch {
      // listener closed
    }
  })();
  return {
    port: listener.addr.port,
    open: () => conns.size,
    close: async () => {
      listener.close();
      for (const c of conns) c.close();
      await serve;
      await Promise.all(tasks);
    },
  };
}

/** Sends `text` through a new connection and reads the echo; `null` if the stream ended. */
async function roundTrip(conn: Deno.Conn, text: string): Promise<string | null> {
  await conn.write(new TextEncoder().encode(text));
  const buf = new Uint8Array(1024);
  let got = "";
  while (got.length < text.length) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return null;
    got += new TextDecoder().decode(buf.subarray(0, n));
  }
  return got;
}

/** Whether a connection through the proxy echoes (false: refused, dropped or cut). */
async function echoes(port: number): Promise<boolean> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
  if (conn === undefined) return false;
  try {
    return await roundTrip(conn, "ping").catch(() => null) === "ping";
  } finally {
    conn.close();
  }
}

Deno.test("TcpProxy forwards both ways and its tap sees every chunk", async () => {
  const echo = echoServer();
  const proxy = TcpProxy.start({ targetPort: echo.port });
  const seen: string[] = [];
  const untap = proxy.tap((dir, chunk) => seen.push(`${dir}:${new TextDecoder().decode(chunk)}`));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  assert.equal(await roundTrip(conn, "hello"), "hello");
  assert.deepEqual(seen, ["up:hello", "down:hello"]);
  assert.equal(proxy.liveConnections, 1);
  untap();
  assert.equal(await roundTrip(conn, "again"), "again");
  assert.equal(seen.length, 2, "a removed tap sees nothing more");
  conn.close();
  await until("the proxy to see the client leave", () => proxy.liveConnections === 0);
  await proxy.close();
  await echo.close();
});

Deno.test("TcpProxy tap returning false cuts that connection instead of forwarding", async () => {
  const echo = echoServer();
  await using proxy = TcpProxy.start({ targetPort: echo.port });
  proxy.tap((dir, chunk) => !(dir === "down" && new TextDecoder().decode(chunk) === "secret"));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  assert.equal(await roundTrip(conn, "public"), "public");
  assert.equal(await roundTrip(conn, "secret"), null, "the answer never arrives");
  conn.close();
  assert.ok(await echoes(proxy.port), "other connections go on");
  await proxy.close();
  await echo.close();
});

Deno.test("TcpProxy.cut ends live connections on both sides and drops new ones until restore", async () => {
  const echo = echoServer();
  await using proxy = TcpProxy.start({ targetPort: echo.port });
  const a = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const b = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  assert.equal(await roundTrip(a, "a"), "a");
  assert.equal(await roundTrip(b, "b"), "b");
  assert.equal(echo.open(), 2);

  assert.equal(proxy.cut(), 2);
  assert.ok(proxy.isCut);
  assert.equal(await roundTrip(a, "lost"), null, "the client's stream ends");
  await until("the server to see its connections end", () => echo.open() === 0);
  assert.equal(await echoes(proxy.port), false, "a new connection is dropped");
  assert.equal(echo.open(), 0, "a dropped connection never reaches the server");

  proxy.restore();
  assert.equal(proxy.isCut, false);
  assert.ok(await echoes(proxy.port), "forwards again after restore()");
  a.close();
  b.close();
  await proxy.close();
  await echo.close();
});

Deno.test("TcpProxy.cut in refuse mode closes the port and restores by itself after forMs", async () => {
  const echo = echoServer();
  await using proxy = TcpProxy.start({ targetPort: echo.port });
  assert.ok(await echoes(proxy.port));
  proxy.cut({ mode: "refuse", forMs: 1_000 });
  // The socket closes once its pending accept is cancelled: a connection can be reset before.
  await until(
    "a connection to be refused",
    () =>
      Deno.connect({ hostname: "127.0.0.1", port: proxy.port }).then(
        (c) => void c.close(),
        (err) => err instanceof Deno.errors.ConnectionRefused,
      ),
  );
  await until("the proxy to accept again on the same port", () => echoes(proxy.port));
  assert.equal(proxy.isCut, false);
  await proxy.close();
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: proxy.port }),
    Deno.errors.ConnectionRefused,
    "a closed proxy listens no more",
  );
  await echo.close();
});

Deno.test("TcpProxy.silence keeps live connections open but swallows the target's answers", async () => {
  const echo = echoServer();
  await using proxy = TcpProxy.start({ targetPort: echo.port });
  const seen: string[] = [];
  proxy.tap((dir, chunk) => void seen.push(`${dir}:${new TextDecoder().decode(chunk)}`));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  assert.equal(await roundTrip(conn, "before"), "before");
  assert.equal(proxy.silence(), 1);
  await conn.write(new TextEncoder().encode("lost"));
  // The target answered (the tap saw it) but nothing reached the client, and the link stays.
  await until("the target to answer", () => seen.includes("down:lost"));
  const read = conn.read(new Uint8Array(16));
  const nothing = await Promise.race([read, new Promise((r) => setTimeout(() => r("none"), 200))]);
  assert.equal(nothing, "none", "no answer and no end of stream");
  assert.equal(proxy.liveConnections, 1);
  assert.ok(await echoes(proxy.port), "a new connection works");
  conn.close();
  await read.catch(() => {});
  await proxy.close();
  await echo.close();
});
