/**
 * The project's CBOR (RFC 8949) dialect, as `cbor2` options: the reference implementation that
 * the fast paths (`_cbor_encode.ts`, `_cbor_decode.ts`) must agree with, and their fallback for anything unusual. The `cb`
 * serializer and the service <-> endpoint message envelope both use it, so a value survives
 * either path the same way.
 *
 * Beyond cbor2's defaults it:
 * - keeps every `bigint` a bigint (tags 2/3, even `1n`) and every number a number;
 * - encodes `Map` with tag 259 so a string-keyed Map does not come back as a plain object;
 * - encodes `Date` exactly (tag 1 when the epoch seconds round-trip, else tag 0 text);
 * - encodes `Uint8Array` (and `Buffer`) with tag 64 and copies byte strings on decode, so a
 *   decoded array owns its own `ArrayBuffer`;
 * - encodes every typed array kind, `Float16Array` included where the runtime has it, with its
 *   RFC 8746 tag, and decodes the platform-endian ones with one copy instead of a per-element
 *   loop;
 * - encodes `ArrayBuffer`, `DataView` and `Error` with private tags (below);
 * - resolves encoders along the prototype chain, so subclasses (`class X extends Map`, any
 *   `Error` subclass, `Buffer`) encode as their base type;
 * - encodes strings that are not well-formed UTF-16 with tag 273 (WTF-8) instead of mangling
 *   them.
 *
 * Private tag numbers, from the IANA "first come first served" range (32768 and up), not
 * registered:
 * - 40500 Error (`_cbor_error.ts`);
 * - 40501 ArrayBuffer: a byte string;
 * - 40502 DataView: a byte string.
 *
 * @module
 */
import {
  type AbstractClassType,
  decode,
  defaultDecodeOptions,
  encode,
  type EncodeOptions,
  type ITag,
  type ObjectCreator,
  type RequiredDecodeOptions,
  type RequiredEncodeOptions,
  type TagDecoder,
  type TagDecoderMap,
  type TaggedValue,
  type ToCBOR,
  type TypeEncoder,
  TypeEncoderMap,
  type Writer,
} from "cbor2";
import { writeInt, writeTag, writeUnknown } from "cbor2/encoder";
import { decodeError, encodeError, ERROR_TAG } from "./_cbor_error.ts";

/** Private CBOR tag of an `ArrayBuffer`. */
export const ARRAY_BUFFER_TAG = 40501;
/** Private CBOR tag of a `DataView`. */
export const DATA_VIEW_TAG = 40502;
/** RFC 8746 "uint8 typed array". */
export const UINT8_TAG = 64;
/** IANA tag 259: "map datatype with key-value operations (e.g. JavaScript Map)". */
export const MAP_TAG = 259;
/** IANA tag 258: a set (cbor2 decodes it). */
export const SET_TAG = 258;

const MT_BYTE_STRING = 2;
const MT_MAP = 5;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// deno-lint-ignore no-explicit-any
type AnyEncoder = TypeEncoder<any>;
type Ctor = abstract new (...args: never[]) => unknown;

function writeBytes(tag: number, bytes: Uint8Array, w: Writer, opts: RequiredEncodeOptions): void {
  writeTag(tag, w, opts);
  writeInt(bytes.byteLength, w, MT_BYTE_STRING);
  w.write(bytes);
}

export function viewBytes(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** One typed array kind, with its RFC 8746 tags (`0b010_f_s_e_ll`). */
interface TypedKind {
  readonly ctor: { new (buffer: ArrayBuffer): ArrayBufferView; readonly BYTES_PER_ELEMENT: number };
  readonly be: number;
  readonly le: number;
  /** DataView getter used when the data's byte order is not the host's. */
  readonly get: (dv: DataView, offset: number, littleEndian: boolean) => number | bigint;
}

const TYPED_KINDS: readonly TypedKind[] = [
  { ctor: Uint16Array, be: 65, le: 69, get: (d, o, l) => d.getUint16(o, l) },
  { ctor: Uint32Array, be: 66, le: 70, get: (d, o, l) => d.getUint32(o, l) },
  { ctor: BigUint64Array, be: 67, le: 71, get: (d, o, l) => d.getBigUint64(o, l) },
  { ctor: Int16Array, be: 73, le: 77, get: (d, o, l) => d.getInt16(o, l) },
  { ctor: Int32Array, be: 74, le: 78, get: (d, o, l) => d.getInt32(o, l) },
  { ctor: BigInt64Array, be: 75, le: 79, get: (d, o, l) => d.getBigInt64(o, l) },
  // Float16Array only where the runtime has it (not Node 20 to 23).
  ...(typeof Float16Array === "function"
    ? [{
      ctor: Float16Array,
      be: 80,
      le: 84,
      get: (d: DataView, o: number, l: boolean) => d.getFloat16(o, l),
    }]
    : []),
  { ctor: Float32Array, be: 81, le: 85, get: (d, o, l) => d.getFloat32(o, l) },
  { ctor: Float64Array, be: 82, le: 86, get: (d, o, l) => d.getFloat64(o, l) },
];

function expectBytes(tag: ITag): Uint8Array {
  if (!(tag.contents instanceof Uint8Array)) {
    throw new TypeError(`CBOR tag ${String(tag.tag)} must hold a byte string`);
  }
  return tag.contents;
}

function decodeTyped(kind: TypedKind, littleEndian: boolean): TagDecoder {
  const size = kind.ctor.BYTES_PER_ELEMENT;
  return (tag) => {
    const bytes = expectBytes(tag);
    if (bytes.byteLength % size !== 0) {
      throw new RangeError(
        `CBOR tag ${String(tag.tag)} holds ${bytes.byteLength} bytes, not a multiple of ${size}`,
      );
    }
    // slice() copies into a fresh, aligned buffer that the result owns.
    const out = new kind.ctor(bytes.slice().buffer);
    if (littleEndian !== LITTLE_ENDIAN_HOST) {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const arr = out as unknown as Record<number, number | bigint>;
      const n = bytes.byteLength / size;
      for (let i = 0; i < n; i++) arr[i] = kind.get(dv, i * size, littleEndian);
    }
    return out;
  };
}

// --- Encoders ------------------------------------------------------------------------------

/**
 * cbor2 looks encoders up by an object's exact constructor; this map also walks the
 * constructor's prototype chain (and recognises any `Error`), caching the answer per class in a
 * WeakMap so it stays bounded by the classes alive.
 */
class ProtoChainEncoderMap extends TypeEncoderMap {
  #resolved = new WeakMap<object, AnyEncoder | null>();

  override get<T extends AbstractClassType<T>>(typ: T): TypeEncoder<InstanceType<T>> | undefined {
    const direct = super.get(typ);
    // `typ` is whatever `obj.constructor` holds, which for data with a "constructor" key is
    // not a class at all (and cannot key a WeakMap).
    if (direct !== undefined || typeof typ !== "function" || (typ as unknown) === Array) {
      return direct;
    }
    const cached = this.#resolved.get(typ);
    if (cached !== undefined) return cached ?? undefined;
    let found: AnyEncoder | null = null;
    for (
      let p: unknown = Object.getPrototypeOf(typ);
      typeof p === "function" && p !== Function.prototype;
      p = Object.getPrototypeOf(p)
    ) {
      const enc = super.get(p as Ctor as AbstractClassType<T>);
      if (enc !== undefined) {
        found = enc;
        break;
      }
    }
    // DOMException and the like inherit Error.prototype without their constructor inheriting Error.
    if (found === null && (typ as { prototype?: unknown }).prototype instanceof Error) {
      found = encodeError as AnyEncoder;
    }
    this.#resolved.set(typ, found);
    return found ?? undefined;
  }
}

const TYPES: ProtoChainEncoderMap = new ProtoChainEncoderMap();

TYPES.registerEncoder(Error, encodeError);
/**
 * A Date as tag 1 (epoch seconds) when that decodes back to the same millisecond, else tag 0
 * (ISO text): cbor2 decodes tag 1 as `new Date(seconds * 1000)`, which can land 1 ms low.
 *
 * @param d The date.
 * @returns The tag and its contents.
 */
export function dateTagged(d: Date): TaggedValue {
  const ms = d.getTime();
  if (Number.isNaN(ms)) return [1, Number.NaN];
  const seconds = ms / 1000;
  return seconds * 1000 === ms ? [1, seconds] : [0, d.toISOString()];
}
TYPES.registerEncoder(Date, dateTagged);
TYPES.registerEncoder(Map, (m: Map<unknown, unknown>, w, opts) => {
  writeTag(MAP_TAG, w, opts);
  writeInt(m.size, w, MT_MAP);
  for (const [k, v] of m) {
    writeUnknown(k, w, opts);
    writeUnknown(v, w, opts);
  }
  return undefined;
});
// cbor2's own path for plain objects encodes every key with a separate `encode()` call (for
// optional key sorting), allocating a fresh writer per key; writing in place is ~10x faster.
function encodePlainObject(
  o: Record<string, unknown>,
  w: Writer,
  opts: RequiredEncodeOptions,
): TaggedValue | undefined {
  // Same precedence as cbor2's own path: toCBOR, then toJSON, then the own enumerable keys.
  if (typeof o.toCBOR === "function") {
    return (o as unknown as ToCBOR).toCBOR(w, opts);
  }
  if (typeof o.toJSON === "function") {
    writeUnknown((o.toJSON as () => unknown)(), w, opts);
    return undefined;
  }
  const keys = Object.keys(o);
  writeInt(keys.length, w, MT_MAP);
  for (const key of keys) {
    writeUnknown(key, w, opts);
    writeUnknown(o[key], w, opts);
  }
  return undefined;
}
TYPES.registerEncoder(Object, encodePlainObject as AnyEncoder);
TYPES.registerEncoder(Set, (s: Set<unknown>): TaggedValue => [SET_TAG, [...s]]);
TYPES.registerEncoder(Uint8Array, (u: Uint8Array, w, opts) => {
  writeBytes(UINT8_TAG, viewBytes(u), w, opts);
  return undefined;
});
TYPES.registerEncoder(Uint8ClampedArray, (u: Uint8ClampedArray, w, opts) => {
  writeBytes(68, viewBytes(u), w, opts);
  return undefined;
});
TYPES.registerEncoder(Int8Array, (u: Int8Array, w, opts) => {
  writeBytes(72, viewBytes(u), w, opts);
  return undefined;
});
/** The tag each exact typed-array (and binary) class is written with on this host. */
export const BINARY_TAGS: ReadonlyMap<unknown, number> = new Map<unknown, number>([
  [Uint8Array, UINT8_TAG],
  [Uint8ClampedArray, 68],
  [Int8Array, 72],
  [ArrayBuffer, ARRAY_BUFFER_TAG],
  [DataView, DATA_VIEW_TAG],
  ...TYPED_KINDS.map((k): [unknown, number] => [k.ctor, LITTLE_ENDIAN_HOST ? k.le : k.be]),
]);

for (const kind of TYPED_KINDS) {
  const tag = LITTLE_ENDIAN_HOST ? kind.le : kind.be;
  TYPES.registerEncoder(kind.ctor, (a: ArrayBufferView, w, opts) => {
    writeBytes(tag, viewBytes(a), w, opts);
    return undefined;
  });
}
TYPES.registerEncoder(ArrayBuffer, (b: ArrayBuffer, w, opts) => {
  writeBytes(ARRAY_BUFFER_TAG, new Uint8Array(b), w, opts);
  return undefined;
});
TYPES.registerEncoder(DataView, (d: DataView, w, opts) => {
  writeBytes(DATA_VIEW_TAG, viewBytes(d), w, opts);
  return undefined;
});

// --- Decoders ------------------------------------------------------------------------------

/**
 * Entries of decoded string-keyed maps whose plain object would reorder keys (array-index-like
 * keys come first in a JS object), so tag 259 can rebuild the Map in wire order. Weak, so an
 * entry lives only as long as its object.
 */
const ENTRY_ORDER = new WeakMap<object, readonly (readonly unknown[])[]>();

export const createObject: ObjectCreator = (kve) => {
  let digitKey = false;
  for (const entry of kve) {
    const key = entry[0];
    if (typeof key !== "string") return new Map(kve.map((e) => [e[0], e[1]]));
    const c = key.charCodeAt(0);
    if (c >= 48 && c <= 57) digitKey = true;
  }
  // Object.fromEntries defines own properties, so a "__proto__" key is data, not a prototype.
  const obj = Object.fromEntries(kve);
  if (digitKey && kve.length > 1) ENTRY_ORDER.set(obj, kve);
  return obj;
};

function decodeMap(tag: ITag): Map<unknown, unknown> {
  const c = tag.contents;
  if (c instanceof Map) return c;
  if (typeof c !== "object" || c === null || Array.isArray(c)) {
    throw new TypeError(`CBOR tag ${MAP_TAG} (Map) must hold a map`);
  }
  const ordered = ENTRY_ORDER.get(c);
  if (ordered === undefined) return new Map(Object.entries(c));
  const m = new Map<unknown, unknown>();
  for (const e of ordered) m.set(e[0], e[1]);
  return m;
}

const TAGS: TagDecoderMap = new Map<number, TagDecoder>([
  [ERROR_TAG, decodeError],
  [ARRAY_BUFFER_TAG, (tag) => expectBytes(tag).slice().buffer],
  [DATA_VIEW_TAG, (tag) => new DataView(expectBytes(tag).slice().buffer)],
  [MAP_TAG, decodeMap],
  [UINT8_TAG, (tag) => expectBytes(tag).slice()],
  [68, (tag) => new Uint8ClampedArray(expectBytes(tag).slice().buffer)],
  [72, (tag) => new Int8Array(expectBytes(tag).slice().buffer)],
]);
for (const kind of TYPED_KINDS) {
  TAGS.set(kind.be, decodeTyped(kind, false));
  TAGS.set(kind.le, decodeTyped(kind, true));
}

const ENCODE_OPTIONS: EncodeOptions = {
  chunkSize: 256,
  collapseBigInts: false,
  types: TYPES,
  wtf8: true,
};

/** The complete decode options of the dialect, as tag decoders receive them. */
export const DECODE_OPTIONS: RequiredDecodeOptions = {
  ...defaultDecodeOptions,
  collapseBigInts: false,
  createObject,
  tags: TAGS,
};

/**
 * Encodes a value with cbor2 in the project's dialect.
 *
 * @param value Any CBOR-encodable value (functions and unregistered symbols are not).
 * @returns The CBOR bytes.
 * @throws {TypeError} When the value holds something CBOR cannot carry.
 * @throws {RangeError} When the value is cyclic or too deeply nested (call stack exhausted).
 */
export function slowEncode(value: unknown): Uint8Array {
  return encode(value, ENCODE_OPTIONS);
}

/**
 * Decodes one CBOR item with cbor2 in the project's dialect; extra bytes after it are an error.
 *
 * @param bytes CBOR bytes.
 * @returns The decoded value.
 */
export function slowDecode(bytes: Uint8Array): unknown {
  return decode(bytes, DECODE_OPTIONS);
}
