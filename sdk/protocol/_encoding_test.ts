import assert from "node:assert/strict";
import {
  decodeBase64Portable,
  decodeHexPortable,
  encodeBase64Portable,
  encodeHexPortable,
} from "./_encoding.ts";

// Deno has Uint8Array.fromBase64 and toBase64: the fallback for Node 20 to 24 must agree with them.
Deno.test("portable base64 agrees with Uint8Array.toBase64 and fromBase64", () => {
  for (let n = 0; n < 70; n++) {
    const bytes = crypto.getRandomValues(new Uint8Array(n));
    const text = encodeBase64Portable(bytes);
    assert.equal(text, bytes.toBase64());
    const back = decodeBase64Portable(text);
    assert.equal(Object.getPrototypeOf(back), Uint8Array.prototype);
    assert.deepEqual(back, bytes);
    // unpadded and with whitespace, as fromBase64's loose mode takes it
    const loose = text.replace(/=+$/, "").replace(/(.{8})/g, "$1\n ");
    assert.deepEqual(decodeBase64Portable(loose), Uint8Array.fromBase64(loose));
  }
});

Deno.test("portable base64 refuses what Uint8Array.fromBase64 refuses", () => {
  for (const bad of ["A", "AA=", "A===", "AAAAA", "AAAAA==", "AA*A", "AA==AA", "-_-_", "AAA=A"]) {
    assert.throws(() => Uint8Array.fromBase64(bad), SyntaxError, `native takes ${bad}`);
    assert.throws(() => decodeBase64Portable(bad), SyntaxError, bad);
  }
});

Deno.test("portable base64 handles inputs longer than one chunk of String.fromCharCode", () => {
  const bytes = Uint8Array.from({ length: 100_001 }, (_, i) => (i * 7919) % 251);
  const text = encodeBase64Portable(bytes);
  assert.equal(text, bytes.toBase64());
  assert.deepEqual(decodeBase64Portable(text), bytes);
});

Deno.test("portable hex agrees with Uint8Array.toHex and fromHex, and refuses what they refuse", () => {
  for (let n = 0; n < 40; n++) {
    const bytes = crypto.getRandomValues(new Uint8Array(n));
    const hex = encodeHexPortable(bytes);
    assert.equal(hex, bytes.toHex());
    assert.deepEqual(decodeHexPortable(hex), bytes);
    assert.deepEqual(decodeHexPortable(hex.toUpperCase()), Uint8Array.fromHex(hex.toUpperCase()));
  }
  for (const bad of ["a", "abc", "zz", "0g", "a b "]) {
    assert.throws(() => Uint8Array.fromHex(bad), SyntaxError, `native takes ${bad}`);
    assert.throws(() => decodeHexPortable(bad), SyntaxError, bad);
  }
});
