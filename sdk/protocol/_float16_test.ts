import assert from "node:assert/strict";
import { exactFloat16Bits, float16Value } from "./_float16.ts";

// Deno has DataView's float16 methods: the plain arithmetic must agree with them exactly.
const view = new DataView(new ArrayBuffer(2));
function native(bits: number): number {
  view.setUint16(0, bits);
  return view.getFloat16(0);
}

Deno.test("float16Value matches DataView.getFloat16 for every half", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    assert.ok(Object.is(float16Value(bits), native(bits)), `bits 0x${bits.toString(16)}`);
  }
});

Deno.test("exactFloat16Bits gives back the bits of every half but NaN", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    const v = native(bits);
    if (Number.isNaN(v)) continue;
    assert.equal(exactFloat16Bits(v), bits, `value ${v}`);
  }
});

Deno.test("exactFloat16Bits refuses numbers half precision does not hold", () => {
  for (const v of [0.1, 1 / 3, 65520, 70000, 2 ** -25, 2 ** -30, 1 + 2 ** -11, 1e-40, 2049]) {
    assert.equal(exactFloat16Bits(v), undefined, String(v));
    view.setFloat16(0, v);
    assert.notEqual(view.getFloat16(0), v, `native keeps ${v}`);
  }
  for (let i = 0; i < 2000; i++) {
    const v = Math.fround((Math.random() - 0.5) * 2 ** (Math.random() * 60 - 30));
    view.setFloat16(0, v);
    assert.equal(exactFloat16Bits(v) !== undefined, view.getFloat16(0) === v, String(v));
  }
});
