/**
 * The decoding fast path for the project's CBOR dialect (`_cbor_dialect.ts`), used by the `cb` serializer and
 * the message envelope, which run for every task and result.
 *
 * cbor2 is general and careful but spends microseconds per item (a generator per token on
 * decode; a fresh writer per object key on encode). These hand-written paths cover what tasks
 * and messages are made of (numbers, strings, bigints, plain objects, arrays, Map, Set, Date,
 * typed arrays, errors) and write the same encoding; anything else goes through cbor2, value by
 * value on encode and for the whole input on decode (also whenever the fast decoder meets
 * anything unusual or malformed, so errors are cbor2's).
 *
 * Encoding is in `_cbor_encode.ts`.
 *
 * @module
 */
import { Tag } from "cbor2";
import { createObject, DECODE_OPTIONS, slowDecode } from "./_cbor_dialect.ts";
import { encodeHex } from "./_encoding.ts";
import { float16Value } from "./_float16.ts";

const TEXT_DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Thrown inside the fast decoder to hand the whole input to cbor2. */
const FALLBACK = Symbol("fallback");
const MAX_DEPTH = 1000;

class In {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly end: number;
  pos = 0;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.end = bytes.byteLength;
  }

  take(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw FALLBACK;
    this.pos = at + n;
    return at;
  }
}

/** The argument of a head: a length, an integer or a tag number. */
function argument(r: In, ai: number): number | bigint {
  if (ai < 24) return ai;
  switch (ai) {
    case 24:
      return r.bytes[r.take(1)]!;
    case 25:
      return r.view.getUint16(r.take(2));
    case 26:
      return r.view.getUint32(r.take(4));
    case 27: {
      const v = r.view.getBigUint64(r.take(8));
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    default:
      throw FALLBACK; // indefinite lengths (31) and reserved values
  }
}

function length(r: In, ai: number): number {
  const n = argument(r, ai);
  if (typeof n !== "number") throw FALLBACK;
  return n;
}

function readString(r: In, len: number): string {
  const at = r.take(len);
  const bytes = r.bytes;
  if (len < 64) {
    let s = "";
    for (let i = at; i < at + len; i++) {
      const c = bytes[i]!;
      if (c >= 0x80) return TEXT_DECODER.decode(bytes.subarray(at, at + len));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return TEXT_DECODER.decode(bytes.subarray(at, at + len));
}

function readBignum(r: In, negative: boolean): bigint {
  const len = length(r, r.bytes[r.take(1)]! & 31);
  const at = r.take(len);
  let v: bigint;
  if (len <= 8) {
    let hi = 0;
    let lo = 0;
    for (let i = 0; i < len; i++) {
      const b = r.bytes[at + i]!;
      if (len - i > 4) hi = hi * 256 + b;
      else lo = lo * 256 + b;
    }
    v = hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
  } else {
    v = BigInt("0x" + encodeHex(r.bytes.subarray(at, at + len)));
  }
  return negative ? -1n - v : v;
}

/**
 * A map of `n` entries. The usual one (string keys, none starting with a digit, no `__proto__`)
 * is built as a plain object as it is read; any other key hands the entries to `createObject`,
 * which keeps the dialect's rules (a `Map` for non-string keys, wire order for digit keys).
 */
function readMap(r: In, n: number, depth: number): unknown {
  const obj: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const key = readItem(r, depth);
    if (typeof key === "string" && key !== "__proto__") {
      const c = key.charCodeAt(0);
      if (!(c >= 48 && c <= 57)) {
        obj[key] = readItem(r, depth);
        continue;
      }
    }
    // Keys so far are plain (no digit keys), so the object's own order is wire order.
    const entries: [unknown, unknown][] = Object.entries(obj);
    entries.push([key, readItem(r, depth)]);
    for (let j = i + 1; j < n; j++) {
      const k = readItem(r, depth);
      entries.push([k, readItem(r, depth)]);
    }
    return createObject(entries as never, DECODE_OPTIONS);
  }
  return obj;
}

function readItem(r: In, depth: number): unknown {
  if (depth > MAX_DEPTH) throw FALLBACK;
  const ib = r.bytes[r.take(1)]!;
  const mt = ib >> 5;
  const ai = ib & 31;
  switch (mt) {
    case 0:
      return argument(r, ai);
    case 1: {
      const n = argument(r, ai);
      return typeof n === "bigint" ? -1n - n : -1 - n;
    }
    case 2: {
      const len = length(r, ai);
      const at = r.take(len);
      return r.bytes.subarray(at, at + len);
    }
    case 3:
      return readString(r, length(r, ai));
    case 4: {
      const n = length(r, ai);
      if (n > r.end - r.pos) throw FALLBACK; // each item takes at least a byte
      const a = new Array<unknown>(n);
      for (let i = 0; i < n; i++) a[i] = readItem(r, depth + 1);
      return a;
    }
    case 5: {
      const n = length(r, ai);
      if (n * 2 > r.end - r.pos) throw FALLBACK;
      return readMap(r, n, depth + 1);
    }
    case 6: {
      const tag = argument(r, ai);
      if ((tag === 2 || tag === 3) && r.pos < r.end && r.bytes[r.pos]! >> 5 === 2) {
        return readBignum(r, tag === 3);
      }
      return new Tag(tag, readItem(r, depth + 1)).decode(DECODE_OPTIONS);
    }
    default:
      switch (ai) {
        case 20:
          return false;
        case 21:
          return true;
        case 22:
          return null;
        case 23:
          return undefined;
        case 25:
          return float16Value(r.view.getUint16(r.take(2)));
        case 26:
          return r.view.getFloat32(r.take(4));
        case 27:
          return r.view.getFloat64(r.take(8));
        default:
          throw FALLBACK; // other simple values, stray breaks
      }
  }
}

/**
 * Decodes one CBOR item in the project's dialect; extra bytes after it are an error.
 *
 * @param bytes CBOR bytes.
 * @returns The decoded value.
 * @throws {Error} cbor2's error for malformed input.
 */
export function decodeCbor(bytes: Uint8Array): unknown {
  try {
    const r = new In(bytes);
    const value = readItem(r, 0);
    if (r.pos === r.end) return value;
  } catch {
    // FALLBACK, or a fast-path failure: cbor2 either decodes it or throws the real error.
  }
  return slowDecode(bytes);
}
