/**
 * IEEE 754 half precision for the CBOR fast paths, in plain arithmetic: `DataView`'s
 * `getFloat16` and `setFloat16` (and `Float16Array`) exist only in newer runtimes (Node 24 and
 * later), and the SDK runs on Node 20.
 *
 * @module
 */

const SCRATCH = new DataView(new ArrayBuffer(4));

/**
 * The half-precision bits of a number, when half precision holds it exactly.
 *
 * @param v A number (NaN is the caller's: it has many encodings).
 * @returns The 16 bits, or `undefined` when the number needs more precision or range.
 */
export function exactFloat16Bits(v: number): number | undefined {
  if (Math.fround(v) !== v) return undefined;
  SCRATCH.setFloat32(0, v);
  const bits = SCRATCH.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exp32 = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp32 === 0) return mant === 0 ? sign : undefined; // zero; float32 subnormals are too small
  if (exp32 === 0xff) return mant === 0 ? sign | 0x7c00 : undefined; // infinity; NaN not here
  const exp = exp32 - 127;
  if (exp > 15) return undefined;
  if (exp >= -14) {
    return (mant & 0x1fff) === 0 ? sign | ((exp + 15) << 10) | (mant >>> 13) : undefined;
  }
  if (exp < -24) return undefined;
  // A half subnormal: (1.mant * 2^exp) = m * 2^-24 with m a whole number below 1024.
  const full = mant | 0x800000;
  const shift = -exp - 1;
  return (full & ((1 << shift) - 1)) === 0 ? sign | (full >>> shift) : undefined;
}

/**
 * The number that half-precision bits stand for.
 *
 * @param bits The 16 bits, big half first as CBOR writes them.
 * @returns The number.
 */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}
