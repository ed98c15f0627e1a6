import assert from "node:assert/strict";
import { encodeFrame, FrameWriter, memorySource, readFrames } from "./frames.ts";

/** A readable resource that hands out `bytes` in pieces of `size`, counting its reads. */
function pieces(bytes: Uint8Array, size: number) {
  let at = 0;
  const source = {
    reads: 0,
    read(p: Uint8Array): Promise<number | null> {
      source.reads++;
      if (at >= bytes.byteLength) return Promise.resolve(null);
      const n = Math.min(size, p.byteLength, bytes.byteLength - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
  return source;
}

function joined(frames: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
  let at = 0;
  for (const f of frames) {
    out.set(f, at);
    at += f.byteLength;
  }
  return out;
}

async function collect<T>(it: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of it) out.push(m);
  return out;
}

Deno.test("readFrames reads frames split anywhere, from a resource and from a stream", async () => {
  const small = [{ a: 1 }, { c: [1, 2, 3] }, { d: null }];
  assert.deepEqual(await collect(readFrames(pieces(joined(small.map(encodeFrame)), 1))), small);
  const messages = [{ a: 1 }, { b: "x".repeat(300_000) }, { c: [1, 2, 3] }, { d: null }];
  const bytes = joined(messages.map(encodeFrame));
  for (const size of [7, 4096, 1 << 20]) {
    assert.deepEqual(await collect(readFrames(pieces(bytes, size))), messages, `pieces of ${size}`);
  }
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let at = 0; at < bytes.byteLength; at += 1000) c.enqueue(bytes.slice(at, at + 1000));
      c.close();
    },
  });
  assert.deepEqual(await collect(readFrames(stream)), messages);
});

Deno.test("readFrames refuses a frame over the size limit", async () => {
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, 0xffffffff);
  await assert.rejects(collect(readFrames(pieces(header, 4))), /over the .* limit/);
});

Deno.test("FrameWriter writes the frames of one tick in one write to a resource", async () => {
  const writes: Uint8Array[] = [];
  // A sink that takes at most 5 bytes a call, as a socket may.
  const sink = {
    write(p: Uint8Array): Promise<number> {
      writes.push(p.slice(0, 5));
      return Promise.resolve(Math.min(5, p.byteLength));
    },
  };
  const writer = new FrameWriter<unknown>(sink);
  writer.send({ n: 1 });
  writer.send({ n: 2 });
  await writer.drain();
  const bytes = joined(writes);
  assert.deepEqual(bytes, joined([encodeFrame({ n: 1 }), encodeFrame({ n: 2 })]));
  assert.equal(writes.length, Math.ceil(bytes.byteLength / 5)); // one write, taken 5 bytes a time
  assert.deepEqual(await collect(readFrames(pieces(bytes, 64))), [{ n: 1 }, { n: 2 }]);
  await writer.close();
});

Deno.test("memorySource reads frames given as separate chunks as one stream", async () => {
  const sent = [{ n: 1 }, { n: 2, s: "x".repeat(70_000) }, { n: 3 }];
  const got: unknown[] = [];
  for await (const m of readFrames(memorySource(sent.map((m) => encodeFrame(m))))) got.push(m);
  assert.deepEqual(got, sent);
});
