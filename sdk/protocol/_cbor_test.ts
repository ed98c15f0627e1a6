import assert from "node:assert/strict";
import { decodeCbor } from "./_cbor_decode.ts";
import { encodeCbor, encodeCborBase64 } from "./_cbor_encode.ts";
import { slowDecode, slowEncode } from "./_cbor_dialect.ts";

// The fast paths must agree with cbor2 in the same dialect: each reads what the other writes.

function seeded(seed: number): () => number {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
}

const INTS = [
  0,
  1,
  23,
  24,
  255,
  256,
  65535,
  65536,
  2 ** 32 - 1,
  2 ** 32,
  Number.MAX_SAFE_INTEGER,
  -1,
  -24,
  -25,
  -256,
  -257,
  -(2 ** 32),
  -(2 ** 32) - 1,
  Number.MIN_SAFE_INTEGER,
];
const FLOATS = [0.5, -0, 1.1, 65504, 1e-7, 3.4e38, 1e300, 2 ** 53, -(2 ** 60), Infinity, NaN];
const BIGINTS = [0n, 1n, -1n, 255n, 256n, 2n ** 64n - 1n, 2n ** 64n, -(2n ** 64n) - 1n, 2n ** 200n];
const STRINGS = [
  "",
  "a",
  "x".repeat(23),
  "x".repeat(24),
  "x".repeat(63),
  "x".repeat(64),
  "y".repeat(300),
  "é",
  "🙂".repeat(20),
  "ascii then é",
  "\uFEFFbom",
  "lone \uD800",
  "日本語".repeat(100),
];

function randomValue(rand: () => number, depth: number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const kind = Math.floor(rand() * (depth > 3 ? 6 : 14));
  switch (kind) {
    case 0:
      return pick(INTS);
    case 1:
      return pick(FLOATS);
    case 2:
      return pick(BIGINTS);
    case 3:
      return pick(STRINGS);
    case 4:
      return pick([true, false, null, undefined]);
    case 5:
      return Math.floor((rand() - 0.5) * 2 ** 40) / (rand() < 0.5 ? 1 : 7);
    case 6:
    case 7:
      return Array.from({ length: Math.floor(rand() * 6) }, () => randomValue(rand, depth + 1));
    case 8:
    case 9: {
      const o: Record<string, unknown> = {};
      const keys = [
        "a",
        "b",
        "10",
        "2",
        "__proto__",
        "constructor",
        "toString",
        "é",
        "k".repeat(30),
      ];
      for (let i = Math.floor(rand() * 5); i > 0; i--) {
        Object.defineProperty(o, pick(keys), {
          value: randomValue(rand, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return o;
    }
    case 10:
      return new Map<unknown, unknown>([
        [pick(["k", "10", "2"]), randomValue(rand, depth + 1)],
        [pick(INTS), randomValue(rand, depth + 1)],
      ]);
    case 11:
      return new Set([pick(INTS), pick(STRINGS)]);
    case 12:
      return pick([
        new Date(Math.floor(rand() * 4e12)),
        new Float64Array([rand(), -0]),
        new Uint8Array([1, 2, 3]),
        new BigInt64Array([-1n]),
        new Float16Array([0.5]),
        new Uint16Array([65535]).buffer,
      ]);
    default: {
      const err = new RangeError(pick(STRINGS), { cause: randomValue(rand, depth + 1) });
      (err as unknown as Record<string, unknown>).code = pick(INTS);
      return err;
    }
  }
}

Deno.test("decodeCbor() and cbor2 read each other's encodings of random values", () => {
  const rand = seeded(42);
  for (let i = 0; i < 3000; i++) {
    const v = randomValue(rand, 0);
    const fast = encodeCbor(v);
    const slow = slowEncode(v);
    assert.deepEqual(decodeCbor(fast), v, `fast -> fast, case ${i}`);
    assert.deepEqual(slowDecode(fast), v, `fast -> cbor2, case ${i}`);
    assert.deepEqual(decodeCbor(slow), v, `cbor2 -> fast, case ${i}`);
  }
});

Deno.test("encodeCbor() writes the same bytes as cbor2 for common values", () => {
  const values: unknown[] = [
    ...INTS,
    ...FLOATS,
    ...BIGINTS.filter((b) => b !== 0n),
    ...STRINGS,
    { task_id: "t", data: "cb\nAQ==", error_details: null, statuses: [{ timestamp: 10n ** 18n }] },
    [1, [2, [3, undefined]], { "10": 1, "2": 2 }],
    new Map<unknown, unknown>([["a", 1], [2, new Set([3])]]),
    new Date(1700000000000),
    new Date(1700000000123),
    new Int32Array([1, -1]),
  ];
  for (const v of values) assert.deepEqual(encodeCbor(v), slowEncode(v), String(v));
});

Deno.test("encodeCbor() puts the prefix byte first and copies out of its scratch buffer", () => {
  const a = encodeCbor({ x: 1 }, 1);
  assert.equal(a[0], 1);
  assert.deepEqual(decodeCbor(a.subarray(1)), { x: 1 });
  const b = encodeCbor("other");
  assert.deepEqual(decodeCbor(a.subarray(1)), { x: 1 }, "a later call must not overwrite");
  assert.equal(decodeCbor(b), "other");
  assert.equal(encodeCborBase64([1, 2]), slowEncode([1, 2]).toBase64());
});

Deno.test("encodeCbor() survives reentrant calls from toJSON", () => {
  const inner = { toJSON: () => encodeCborBase64({ nested: true }) };
  const out = decodeCbor(encodeCbor({ a: "before", inner, b: "after" })) as Record<string, string>;
  assert.equal(out.a, "before");
  assert.equal(out.b, "after");
  assert.deepEqual(slowDecode(Uint8Array.fromBase64(out.inner!)), { nested: true });
});

Deno.test("encodeCbor() grows past its scratch buffer for big values", () => {
  const big = { s: "z".repeat(200_000), n: Array.from({ length: 50_000 }, (_, i) => i) };
  assert.deepEqual(decodeCbor(encodeCbor(big)), big);
  assert.deepEqual(decodeCbor(encodeCbor([1])), [1]);
});

Deno.test("decodeCbor() rejects malformed input like cbor2", () => {
  const cases = [
    new Uint8Array([]),
    new Uint8Array([0x18]), // truncated argument
    new Uint8Array([0x63, 0x61]), // truncated string
    new Uint8Array([0x9a, 0xff, 0xff, 0xff, 0xff]), // huge array, no items
    new Uint8Array([0x61, 0xff]), // invalid UTF-8
    new Uint8Array([0x01, 0x02]), // extra data
    new Uint8Array([0xff]), // stray break
  ];
  for (const bytes of cases) {
    assert.throws(() => slowDecode(bytes), `cbor2 accepts ${bytes.toHex()}`);
    assert.throws(() => decodeCbor(bytes), `decodeCbor accepts ${bytes.toHex()}`);
  }
  // Indefinite lengths and simple values are valid; the fast decoder hands them to cbor2.
  assert.deepEqual(decodeCbor(new Uint8Array([0x9f, 0x01, 0x02, 0xff])), [1, 2]);
  assert.equal(decodeCbor(new Uint8Array([0x7f, 0x61, 0x61, 0x61, 0x62, 0xff])), "ab");
});

Deno.test("decodeCbor() keeps a map's special keys when they come after plain ones", () => {
  const own = (o: Record<string, unknown>, k: string, v: unknown) =>
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  const values: unknown[] = [
    own({ a: 1, b: 2 }, "__proto__", { c: 3 }),
    new Map<unknown, unknown>([["a", 1], ["2", 2], ["b", 3], ["10", 4]]),
    new Map<unknown, unknown>([["a", 1], [7, 2], ["b", 3]]),
    { a: 1, "2x": 2, b: { "__proto__x": 3 } },
  ];
  for (const v of values) {
    const decoded = decodeCbor(encodeCbor(v));
    assert.deepEqual(decoded, slowDecode(encodeCbor(v)));
    assert.deepEqual(decoded, v);
  }
  const proto = decodeCbor(encodeCbor(values[0])) as Record<string, unknown>;
  assert.equal(
    Object.getPrototypeOf(proto),
    Object.prototype,
    "__proto__ is data, not a prototype",
  );
  assert.deepEqual(Object.keys(proto), ["a", "b", "__proto__"]);
});
