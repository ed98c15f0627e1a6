import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  DeserializationError,
  deserialize,
  deserializeData,
  deserializeFunction,
  errorToInfo,
  type FunctionSource,
  packArgs,
  packBuffers,
  SerializationError,
  serialize,
  serializeData,
  unpackBuffers,
  unpackTask,
} from "./mod.ts";

function roundTrip<T>(value: T): T {
  const payload = serialize(value);
  assert.ok(payload.startsWith("cb\n"), `expected a cb payload, got ${payload.slice(0, 3)}`);
  assert.doesNotMatch(payload.slice(3), /[^A-Za-z0-9+/=]/, "body must be single-line base64");
  return deserialize(payload) as T;
}

Deno.test("serialize() round-trips primitives, NaN, Infinity and -0 through CBOR", () => {
  for (const v of [0, 1, -1, 1.5, 2 ** 60, Number.MAX_SAFE_INTEGER, "", "x", true, false, null]) {
    assert.equal(roundTrip(v), v);
  }
  assert.ok(Number.isNaN(roundTrip(NaN)));
  assert.equal(roundTrip(Infinity), Infinity);
  assert.equal(roundTrip(-Infinity), -Infinity);
  assert.ok(Object.is(roundTrip(-0), -0));
  assert.equal(roundTrip(undefined), undefined);
  assert.equal(typeof roundTrip(7), "number");
});

Deno.test("serialize() keeps strings with emoji, CJK and lone surrogates", () => {
  for (const s of ["héllo 🙂👩‍👩‍👧", "日本語", "\u0000\n\t", "a\uD800b", "\uDFFF"]) {
    assert.equal(roundTrip(s), s);
  }
});

Deno.test("serialize() keeps bigints as bigints, small and huge", () => {
  for (const v of [0n, 1n, -5n, 2n ** 53n + 1n, 2n ** 100n, -(2n ** 100n), 2n ** 64n - 1n]) {
    const back = roundTrip(v);
    assert.equal(typeof back, "bigint");
    assert.equal(back, v);
  }
  assert.deepEqual(roundTrip({ a: 1n, b: [2n, 3] }), { a: 1n, b: [2n, 3] });
});

Deno.test("serialize() keeps Dates to the millisecond, and invalid Dates", () => {
  const dates = [
    new Date(0),
    new Date(1700000000123),
    new Date(1700000000000),
    new Date(-1),
    new Date(2198673330318), // ms / 1000 * 1000 rounds to ...317: tag 1 alone would lose 1 ms
    new Date("+275760-09-13T00:00:00.000Z"),
  ];
  for (let i = 0; i < 200; i++) dates.push(new Date(Math.floor(Math.random() * 4e12)));
  for (const d of dates) {
    const back = roundTrip(d);
    assert.ok(back instanceof Date);
    assert.equal(back.getTime(), d.getTime());
  }
  assert.ok(Number.isNaN(roundTrip(new Date(NaN)).getTime()));
});

Deno.test("serialize() keeps Maps (string keys and order included) and Sets", () => {
  const m = new Map<unknown, unknown>([["b", 1], ["a", { x: 2 }], ["10", 3], ["2", 4]]);
  const back = roundTrip(m);
  assert.ok(back instanceof Map);
  assert.deepEqual([...back.entries()], [...m.entries()]);

  const mixed = new Map<unknown, unknown>([[1, "one"], [1n, "big"], [null, undefined]]);
  assert.deepEqual([...roundTrip(mixed).entries()], [...mixed.entries()]);

  const s = new Set<unknown>([1, "two", 3n, null]);
  const sBack = roundTrip(s);
  assert.ok(sBack instanceof Set);
  assert.deepEqual([...sBack], [...s]);

  class Registry extends Map<string, number> {}
  const sub = roundTrip(new Registry([["k", 1]]));
  assert.ok(sub instanceof Map);
  assert.equal(sub.get("k"), 1);
});

Deno.test("serialize() keeps every typed array kind, ArrayBuffer and DataView", () => {
  const arrays = [
    new Uint8Array([0, 1, 255]),
    new Uint8ClampedArray([0, 128, 255]),
    new Int8Array([-128, 0, 127]),
    new Uint16Array([0, 1, 65535]),
    new Int16Array([-32768, 1, 32767]),
    new Uint32Array([0, 1, 2 ** 32 - 1]),
    new Int32Array([-(2 ** 31), 1, 2 ** 31 - 1]),
    new Float16Array([0.5, -2, Infinity]),
    new Float32Array([1.5, -0.25, NaN]),
    new Float64Array([Math.PI, -0, 1e300]),
    new BigUint64Array([0n, 1n, 2n ** 64n - 1n]),
    new BigInt64Array([-(2n ** 63n), 0n, 2n ** 63n - 1n]),
  ];
  for (const a of arrays) {
    const back = roundTrip(a);
    assert.equal(back.constructor, a.constructor, a.constructor.name);
    assert.deepEqual(back, a, a.constructor.name);
  }

  // A view into a bigger buffer sends only its own elements and comes back owning its buffer.
  const big = new Float64Array([1, 2, 3, 4]);
  const view = roundTrip(big.subarray(1, 3));
  assert.deepEqual(Array.from(view), [2, 3]);
  assert.equal(view.buffer.byteLength, 16);
  const bytes = roundTrip(new Uint8Array([7, 8, 9]));
  assert.equal(bytes.byteOffset, 0);
  assert.equal(bytes.buffer.byteLength, 3);

  const ab = new Uint8Array([1, 2, 3, 4]).buffer;
  const abBack = roundTrip(ab);
  assert.ok(abBack instanceof ArrayBuffer);
  assert.deepEqual(new Uint8Array(abBack), new Uint8Array([1, 2, 3, 4]));

  const dv = new DataView(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2);
  const dvBack = roundTrip(dv);
  assert.ok(dvBack instanceof DataView);
  assert.equal(dvBack.byteLength, 2);
  assert.equal(dvBack.getUint8(0), 8);
  assert.equal(dvBack.getUint8(1), 7);

  // Buffer is a Uint8Array subclass with a toJSON; it must still travel as bytes.
  const buf = roundTrip(Buffer.from("hi"));
  assert.ok(buf instanceof Uint8Array);
  assert.deepEqual(Array.from(buf), [104, 105]);
});

Deno.test("serialize() keeps nested objects and undefined inside objects and arrays", () => {
  const value = {
    a: undefined,
    list: [1, undefined, { deep: [new Map([["k", new Set([1])]])] }],
    nested: { when: new Date(5), n: null, ["__proto__"]: { polluted: true } },
  };
  const back = roundTrip(value);
  assert.ok(Object.hasOwn(back, "a"));
  assert.equal(back.a, undefined);
  assert.equal(back.list.length, 3);
  assert.ok(1 in back.list);
  assert.equal(back.list[1], undefined);
  const deep = (back.list[2] as { deep: Map<string, Set<number>>[] }).deep[0]!;
  assert.ok(deep.get("k")!.has(1));
  assert.equal(back.nested.when.getTime(), 5);
  // A "__proto__" key stays data: it neither sets the prototype nor pollutes Object.prototype.
  assert.equal(Object.getPrototypeOf(back.nested), Object.prototype);
  assert.ok(Object.hasOwn(back.nested, "__proto__"));
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("serialize() keeps a TypeError's class, message and stack", () => {
  const err = new TypeError("bad input");
  const back = roundTrip(err);
  assert.ok(back instanceof TypeError);
  assert.equal(back.name, "TypeError");
  assert.equal(back.message, "bad input");
  assert.equal(back.stack, err.stack);
  assert.match(back.stack!, /serializer_test\.ts/);
});

Deno.test("serialize() keeps a custom error's name, props and cause chain", () => {
  class QuotaError extends Error {
    override name = "QuotaError";
    code = "E_QUOTA";
    limit = 10n;
  }
  const root = new RangeError("root cause");
  const err = new QuotaError("over quota", { cause: root });
  const back = roundTrip(err) as Error & { code?: string; limit?: bigint };
  assert.ok(back instanceof Error);
  assert.equal(back.name, "QuotaError");
  assert.equal(back.message, "over quota");
  assert.equal(back.stack, err.stack);
  assert.equal(back.code, "E_QUOTA");
  assert.equal(back.limit, 10n);
  assert.ok(back.cause instanceof RangeError);
  assert.equal((back.cause as Error).message, "root cause");
  assert.equal((back.cause as Error).stack, root.stack);

  const noCause = roundTrip(new Error("plain"));
  assert.ok(!Object.hasOwn(noCause, "cause"));
  const undefinedCause = roundTrip(new Error("x", { cause: undefined }));
  assert.ok(Object.hasOwn(undefinedCause, "cause"));
  assert.equal(roundTrip(new Error("x", { cause: "why" })).cause, "why");
});

Deno.test("serialize() keeps AggregateError errors and DOMException names", () => {
  const agg = new AggregateError([new Error("a"), new TypeError("b")], "many");
  const back = roundTrip(agg);
  assert.ok(back instanceof AggregateError);
  assert.equal(back.message, "many");
  assert.equal(back.errors.length, 2);
  assert.ok(back.errors[1] instanceof TypeError);

  const dom = roundTrip(new DOMException("gone", "AbortError"));
  assert.ok(dom instanceof Error);
  assert.equal(dom.name, "AbortError");
  assert.equal(dom.message, "gone");
});

Deno.test("serialize() rejects values CBOR cannot carry, with a TypeError", () => {
  assert.throws(() => serialize({ f: () => 1 }), TypeError);
  assert.throws(() => serialize([Symbol("private")]), TypeError);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => serialize(cyclic), /cyclic or nested too deeply/);
});

Deno.test("serialize() with method json writes plain JSON", () => {
  const payload = serialize({ a: [1, "two"], b: null }, { method: "json" });
  assert.equal(payload, 'js\n{"a":[1,"two"],"b":null}');
  assert.deepEqual(deserialize(payload), { a: [1, "two"], b: null });
  assert.equal(deserialize(serialize("🙂", { method: "json" })), "🙂");
  assert.throws(() => serialize(1n, { method: "json" }), TypeError);
  assert.throws(() => serialize(undefined, { method: "json" }), TypeError);
  assert.throws(
    () => serialize(1, { method: "xml" as "json" }),
    /unknown method "xml"/,
  );
});

Deno.test("serialize() sends functions as their source text", () => {
  function named(a: number, b: number) {
    return a + b;
  }
  const arrow = (x: number) => x * 2;
  async function fetcher() {
    return await Promise.resolve(1);
  }
  const cases: [unknown, string][] = [
    [named, "named"],
    [arrow, "arrow"],
    [fetcher, "fetcher"],
    [function* gen() {
      yield 1;
    }, "gen"],
  ];
  for (const [fn, name] of cases) {
    const payload = serialize(fn);
    assert.equal(payload, `st\n${name}:${String(fn)}`);
    const desc: FunctionSource = deserializeFunction(payload);
    assert.deepEqual(desc, { kind: "function-source", name, source: String(fn) });
    assert.deepEqual(deserialize(payload), desc);
  }
  const anon = serialize([(y: number) => y][0]);
  assert.ok(anon.startsWith("st\n:"), anon);
  assert.equal(deserializeFunction(anon).name, "");
  assert.match(deserializeFunction(anon).source, /=>/);

  // A source holding ":" and non-ASCII text keeps it all; only the first ":" splits.
  const tricky = () => ({ "a:b": "🙂" });
  assert.equal(deserializeFunction(serialize(tricky)).source, String(tricky));
  const weird = () => 1;
  Object.defineProperty(weird, "name", { value: "a:b" });
  assert.equal(deserializeFunction(serialize(weird)).name, "a_b");
});

Deno.test("serialize() rejects native, bound and class functions", () => {
  assert.throws(() => serialize(Math.max), /native or bound/);
  assert.throws(() => serialize(function f() {}.bind(null)), /native or bound/);
  assert.throws(() => serialize(class Foo {}), /class "Foo"/);
});

Deno.test("deserialize() rejects unknown headers and malformed bodies", () => {
  assert.throws(() => deserialize("zz\nabc"), (err: unknown) => {
    assert.ok(err instanceof DeserializationError);
    assert.equal(err.name, "DeserializationError");
    assert.match(err.message, /unknown header "zz"/);
    return true;
  });
  assert.throws(() => deserialize(""), DeserializationError);
  assert.throws(() => deserialize("cb"), DeserializationError);
  assert.throws(() => deserialize("cbX"), DeserializationError);
  assert.throws(() => deserialize("cb\n!!!"), /not valid base64/);
  assert.throws(() => deserialize("cb\n"), /not valid CBOR/);
  assert.throws(() => deserialize("cb\n" + "AQI="), /not valid CBOR/); // two items: extra data
  assert.throws(() => deserialize("js\n{"), /not valid JSON/);
  assert.throws(() => deserialize("st\nno-separator"), /no "name:" prefix/);
  assert.throws(() => deserializeFunction(serialize(1)), /expected an "st" payload, got "cb"/);
  let caught: unknown;
  try {
    deserialize("js\n{");
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DeserializationError);
  assert.ok(caught.cause instanceof SyntaxError);
});

Deno.test("packBuffers() and unpackBuffers() round-trip multibyte and emoji content", () => {
  const parts = ["", "plain", "line\nbreaks\n", "🙂 emoji 👩‍👩‍👧", "日本語:", "12\n34"];
  const packed = packBuffers(parts);
  assert.ok(packed.startsWith("0\n5\nplain"));
  assert.ok(packed.includes(`${"🙂 emoji 👩‍👩‍👧".length}\n🙂`));
  assert.deepEqual(unpackBuffers(packed), parts);
  assert.deepEqual(unpackBuffers(""), []);
  assert.equal(packBuffers(["🙂"]), "2\n🙂", "length counts UTF-16 code units");
});

Deno.test("unpackBuffers() rejects bad lengths and truncated input", () => {
  assert.throws(() => unpackBuffers("5\nabc"), /truncated/);
  assert.throws(() => unpackBuffers("x\nabc"), /bad length "x"/);
  assert.throws(() => unpackBuffers("-1\nabc"), /bad length/);
  assert.throws(() => unpackBuffers("\nabc"), /bad length/);
  assert.throws(() => unpackBuffers("3abc"), /no length line/);
  assert.throws(() => unpackBuffers("3\nabc9"), DeserializationError);
  assert.throws(() => unpackBuffers("99999999999999999999\nx"), DeserializationError);
});

Deno.test("packArgs() and unpackTask() carry a function with args and kwargs", () => {
  function scale(x: number, opts: { by: number }) {
    return x * opts.by;
  }
  const buffer = packBuffers([serialize(scale)]) +
    packArgs([21n, new Date(3), "🙂"], { by: 2, tags: new Set(["a"]) });
  const task = unpackTask(buffer);
  assert.equal(task.fn.name, "scale");
  assert.equal(task.fn.source, String(scale));
  assert.equal(task.args[0], 21n);
  assert.equal((task.args[1] as Date).getTime(), 3);
  assert.equal(task.args[2], "🙂");
  assert.equal(task.kwargs.by, 2);
  assert.ok((task.kwargs.tags as Set<string>).has("a"));

  const noKw = unpackTask(packBuffers([serialize(scale)]) + packArgs([]));
  assert.deepEqual(noKw.args, []);
  assert.deepEqual(noKw.kwargs, {});

  const json = unpackTask(packBuffers([serialize(scale)]) + packArgs([1], {}, { method: "json" }));
  assert.deepEqual(json.args, [1]);

  assert.throws(() => packArgs("nope" as unknown as unknown[]), TypeError);
  assert.throws(() => packArgs([], new Map() as unknown as Record<string, unknown>), TypeError);
});

Deno.test("unpackTask() rejects a buffer that is not exactly 3 packed buffers", () => {
  const fn = packBuffers([serialize(() => 1)]);
  assert.throws(
    () => unpackTask(fn + packBuffers([serialize([1])])),
    (err: unknown) => {
      assert.ok(err instanceof DeserializationError);
      assert.equal(err.message, "Unpack expects 3 buffers, got 2");
      return true;
    },
  );
  assert.throws(
    () => unpackTask(fn + packArgs([1]) + packBuffers(["x"])),
    /^DeserializationError: Unpack expects 3 buffers, got 4$/,
  );
  assert.throws(() => unpackTask(packBuffers([serialize(1)]) + packArgs([])), /"st" payload/);
  assert.throws(
    () => unpackTask(fn + packBuffers([serialize({}), serialize({})])),
    /args must be an array/,
  );
  assert.throws(
    () => unpackTask(fn + packBuffers([serialize([]), serialize([1])])),
    /kwargs must be a plain object/,
  );
});

Deno.test("errorToInfo() gives name, message and stack, with causes", () => {
  const inner = new TypeError("inner");
  const outer = new Error("outer", { cause: inner });
  const info = errorToInfo(outer);
  assert.equal(info.name, "Error");
  assert.equal(info.message, "outer");
  assert.ok(info.stack.startsWith(outer.stack!));
  assert.ok(info.stack.includes(`\nCaused by: ${inner.stack}`));

  const renamed = new Error("too big");
  renamed.name = "MaxResultSizeExceeded";
  assert.equal(errorToInfo(renamed).name, "MaxResultSizeExceeded");

  const loop = new Error("loop");
  (loop as { cause?: unknown }).cause = loop;
  assert.match(errorToInfo(loop).stack, /Caused by: \[circular\]$/);

  assert.deepEqual(Object.keys(info).sort(), ["message", "name", "stack"]);
  const back = deserialize(serialize(info)) as typeof info;
  assert.deepEqual(back, info);
});

Deno.test("errorToInfo() describes non-Error thrown values readably", () => {
  assert.deepEqual(errorToInfo("boom"), { name: "Error", message: "boom", stack: "Error: boom" });
  assert.equal(errorToInfo({ code: 42 }).message, '{"code":42}');
  assert.equal(errorToInfo(undefined).message, "undefined");
  assert.equal(errorToInfo(null).message, "null");
  assert.equal(errorToInfo(5n).message, "5n");
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.equal(errorToInfo(cyclic).message, "[object Object]");
  for (const v of ["s", 1, {}, [], Symbol("x"), () => 1]) {
    const info = errorToInfo(v);
    assert.equal(info.name, "Error");
    assert.equal(typeof info.message, "string");
    assert.ok(info.stack.length > 0);
  }
});

Deno.test("serializeData() refuses a function, at the top or nested, with a SerializationError", () => {
  for (
    const value of [
      () => 1,
      { f: () => 1 },
      [1, function named() {}],
      new Map([["k", Math.max]]),
    ]
  ) {
    const err = (() => {
      try {
        serializeData(value);
      } catch (e) {
        return e;
      }
      assert.fail("a function passed for data");
    })();
    assert.ok(err instanceof SerializationError, String(err));
    assert.ok(err instanceof TypeError, "a SerializationError is a TypeError");
    assert.match(err.message, /function/);
  }
  assert.throws(() => serializeData(() => 1, { method: "json" }), SerializationError);
  assert.throws(() => serializeData({ a: 1n }, { method: "json" }), SerializationError);
});

Deno.test("packArgs() refuses a function argument or keyword argument", () => {
  assert.throws(() => packArgs([() => 1]), SerializationError);
  assert.throws(() => packArgs([], { callback: () => 1 }), SerializationError);
});

Deno.test("deserializeData() refuses a function payload, reads data like deserialize()", () => {
  assert.deepEqual(deserializeData(serializeData({ at: new Date(0) })), { at: new Date(0) });
  assert.throws(
    () => deserializeData(serialize(function f() {})),
    (e: unknown) => e instanceof DeserializationError && /function/.test(e.message),
  );
  assert.throws(() => deserializeData("zz\nbody"), DeserializationError);
});
