/**
 * The encoding fast path for the project's CBOR dialect (`_cbor_dialect.ts`), used by the `cb` serializer and
 * the message envelope, which run for every task and result.
 *
 * cbor2 is general and careful but spends microseconds per item (a generator per token on
 * decode; a fresh writer per object key on encode). These hand-written paths cover what tasks
 * and messages are made of (numbers, strings, bigints, plain objects, arrays, Map, Set, Date,
 * typed arrays, errors) and write the same encoding; anything else goes through cbor2, value by
 * value on encode and for the whole input on decode (also whenever the fast decoder meets
 * anything unusual or malformed, so errors are cbor2's).
 *
 * Decoding is in `_cbor_decode.ts`.
 *
 * @module
 */
import {
  BINARY_TAGS,
  dateTagged,
  MAP_TAG,
  SET_TAG,
  slowEncode,
  UINT8_TAG,
  viewBytes,
} from "./_cbor_dialect.ts";
import { ERROR_TAG, errorBody } from "./_cbor_error.ts";
import { decodeHex, encodeBase64 } from "./_encoding.ts";
import { exactFloat16Bits } from "./_float16.ts";

const TEXT_ENCODER = new TextEncoder();
const SCRATCH = new DataView(new ArrayBuffer(8));
const TWO_32 = 2 ** 32;
/** A writer buffer up to this size is kept for the next call; bigger ones are dropped. */
const KEEP_BYTES = 64 * 1024;

let spare: Uint8Array | null = new Uint8Array(4096);

class Out {
  buf: Uint8Array;
  view: DataView;
  pos = 0;

  constructor() {
    // Reentrant calls (a toJSON that serializes) find no spare buffer and make their own.
    this.buf = spare ?? new Uint8Array(256);
    spare = null;
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  release(): void {
    if (this.buf.byteLength <= KEEP_BYTES) spare = this.buf;
  }

  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** A major type with its argument (a length, an integer or a tag number). */
  head(mt: number, n: number): void {
    const m = mt << 5;
    this.ensure(9);
    const buf = this.buf;
    if (n < 24) {
      buf[this.pos++] = m | n;
    } else if (n < 0x100) {
      buf[this.pos++] = m | 24;
      buf[this.pos++] = n;
    } else if (n < 0x10000) {
      buf[this.pos++] = m | 25;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else if (n < TWO_32) {
      buf[this.pos++] = m | 26;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    } else {
      buf[this.pos++] = m | 27;
      this.view.setUint32(this.pos, Math.floor(n / TWO_32));
      this.view.setUint32(this.pos + 4, n >>> 0);
      this.pos += 8;
    }
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.byteLength);
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
  }
}

function writeNumber(out: Out, v: number): void {
  if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
    if (v >= 0) out.head(0, v);
    else out.head(1, -1 - v);
    return;
  }
  out.ensure(9);
  const buf = out.buf;
  if (Number.isNaN(v)) {
    buf[out.pos++] = 0xf9;
    buf[out.pos++] = 0x7e;
    buf[out.pos++] = 0x00;
    return;
  }
  if (Math.fround(v) === v) {
    const half = exactFloat16Bits(v);
    if (half !== undefined) {
      buf[out.pos++] = 0xf9;
      buf[out.pos++] = half >>> 8;
      buf[out.pos++] = half & 0xff;
      return;
    }
    buf[out.pos++] = 0xfa;
    out.view.setFloat32(out.pos, v);
    out.pos += 4;
    return;
  }
  buf[out.pos++] = 0xfb;
  out.view.setFloat64(out.pos, v);
  out.pos += 8;
}

function writeBigInt(out: Out, v: bigint): void {
  const negative = v < 0n;
  const m = negative ? -1n - v : v;
  out.head(6, negative ? 3 : 2);
  if (m <= 0xffff_ffff_ffff_ffffn) {
    SCRATCH.setBigUint64(0, m);
    let i = 0;
    while (i < 7 && SCRATCH.getUint8(i) === 0) i++;
    out.head(2, 8 - i);
    out.ensure(8 - i);
    for (; i < 8; i++) out.buf[out.pos++] = SCRATCH.getUint8(i);
    return;
  }
  let hex = m.toString(16);
  if (hex.length % 2 === 1) hex = "0" + hex;
  const bytes = decodeHex(hex);
  out.head(2, bytes.byteLength);
  out.bytes(bytes);
}

function headSize(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < TWO_32 ? 5 : 9;
}

function writeString(out: Out, s: string): void {
  const len = s.length;
  if (len < 64) {
    // Short ASCII (ids, keys, states): copy code units straight in.
    out.ensure(2 + len);
    const start = out.pos;
    const buf = out.buf;
    buf[start] = 0x60 | (len < 24 ? len : 24);
    let p = start + (len < 24 ? 1 : 2);
    if (len >= 24) buf[start + 1] = len;
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[p++] = c;
    }
    if (i === len) {
      out.pos = p;
      return;
    }
  }
  if (!s.isWellFormed()) {
    out.bytes(slowEncode(s)); // tag 273 (WTF-8)
    return;
  }
  const max = len * 3;
  const reserved = headSize(max);
  out.ensure(reserved + max);
  const start = out.pos;
  const { written } = TEXT_ENCODER.encodeInto(s, out.buf.subarray(start + reserved));
  const used = headSize(written);
  if (used < reserved) {
    out.buf.copyWithin(start + used, start + reserved, start + reserved + written);
  }
  out.head(3, written);
  out.pos = start + used + written;
}

function writeValue(out: Out, v: unknown): void {
  switch (typeof v) {
    case "number":
      return writeNumber(out, v);
    case "string":
      return writeString(out, v);
    case "boolean":
      return out.byte(v ? 0xf5 : 0xf4);
    case "undefined":
      return out.byte(0xf7);
    case "bigint":
      return writeBigInt(out, v);
    case "object":
      if (v === null) return out.byte(0xf6);
      return writeObject(out, v);
    default:
      // symbols (registered ones have a tag) and functions (cbor2 throws a TypeError)
      out.bytes(slowEncode(v));
  }
}

function writeEntries(out: Out, o: Record<string, unknown>, keys: string[]): void {
  out.head(5, keys.length);
  for (const key of keys) {
    writeString(out, key);
    writeValue(out, o[key]);
  }
}

function writeObject(out: Out, v: object): void {
  // By prototype, not `v.constructor`: data may well have a "constructor" key.
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) {
    const o = v as Record<string, unknown>;
    if (typeof o.toJSON === "function" || typeof o.toCBOR === "function") {
      out.bytes(slowEncode(v));
      return;
    }
    return writeEntries(out, o, Object.keys(o));
  }
  if (proto === Array.prototype) {
    const a = v as unknown[];
    const n = a.length;
    out.head(4, n);
    for (let i = 0; i < n; i++) writeValue(out, a[i]);
    return;
  }
  const ctor = (proto as { constructor?: unknown }).constructor;
  const binaryTag = BINARY_TAGS.get(ctor);
  if (binaryTag !== undefined) {
    out.head(6, binaryTag);
    const bytes = v instanceof ArrayBuffer ? new Uint8Array(v) : viewBytes(v as ArrayBufferView);
    out.head(2, bytes.byteLength);
    out.bytes(bytes);
    return;
  }
  if (v instanceof Map) {
    out.head(6, MAP_TAG);
    out.head(5, v.size);
    for (const [key, value] of v) {
      writeValue(out, key);
      writeValue(out, value);
    }
    return;
  }
  if (v instanceof Set) {
    out.head(6, SET_TAG);
    out.head(4, v.size);
    for (const item of v) writeValue(out, item);
    return;
  }
  if (v instanceof Date) {
    const [tag, contents] = dateTagged(v);
    out.head(6, Number(tag));
    writeValue(out, contents);
    return;
  }
  if (v instanceof Error) {
    out.head(6, ERROR_TAG);
    const body = errorBody(v);
    return writeEntries(out, body, Object.keys(body));
  }
  if (v instanceof Uint8Array && typeof (v as { toCBOR?: unknown }).toCBOR !== "function") {
    // Buffer and other Uint8Array subclasses travel as plain bytes.
    out.head(6, UINT8_TAG);
    out.head(2, v.byteLength);
    out.bytes(viewBytes(v));
    return;
  }
  // Class instances, null-prototype objects, URL, RegExp, boxed primitives, DOMException...
  out.bytes(slowEncode(v));
}

function encodeToOut(value: unknown, prefix: number | undefined): Out {
  const out = new Out();
  if (prefix !== undefined) out.byte(prefix);
  writeValue(out, value);
  return out;
}

/**
 * Encodes a value in the project's CBOR dialect.
 *
 * @param value Any CBOR-encodable value (functions and unregistered symbols are not).
 * @param prefix A byte to put before the CBOR (a version byte), if any.
 * @returns The bytes, in a buffer of their own.
 * @throws {TypeError} When the value holds something CBOR cannot carry.
 * @throws {RangeError} When the value is cyclic or too deeply nested (call stack exhausted).
 */
export function encodeCbor(value: unknown, prefix?: number): Uint8Array {
  let out: Out | undefined;
  try {
    out = encodeToOut(value, prefix);
    return out.buf.slice(0, out.pos);
  } finally {
    out?.release();
  }
}

/**
 * Encodes a value in the project's CBOR dialect, as standard base64 with no line breaks.
 *
 * @param value Any CBOR-encodable value.
 * @returns The base64 text.
 * @throws {TypeError} When the value holds something CBOR cannot carry.
 * @throws {RangeError} When the value is cyclic or too deeply nested.
 */
export function encodeCborBase64(value: unknown): string {
  let out: Out | undefined;
  try {
    out = encodeToOut(value, undefined);
    return encodeBase64(out.buf.subarray(0, out.pos));
  } finally {
    out?.release();
  }
}
