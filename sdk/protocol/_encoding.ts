/**
 * Base64 and hex for the serializer and the CBOR fast paths, on every runtime the SDK supports:
 * `Uint8Array.fromBase64`, `toBase64`, `fromHex` and `toHex` where the runtime has them (Deno,
 * Node 25 and later), `atob`, `btoa` and plain loops otherwise (Node 20 to 24). Nothing here
 * imports `node:buffer`: in Deno that import alone starts the Node compatibility layer, some 4 MiB
 * in every worker process.
 *
 * @module
 */

interface NativeCodecs {
  fromBase64?: (text: string) => Uint8Array;
  fromHex?: (text: string) => Uint8Array;
}
interface NativeMethods {
  toBase64?: () => string;
  toHex?: () => string;
}

const NATIVE: NativeCodecs = Uint8Array as unknown as NativeCodecs;
const PROTO: NativeMethods = Uint8Array.prototype as unknown as NativeMethods;

/** The ASCII whitespace that `Uint8Array.fromBase64` skips. */
const BASE64_SPACE = /[\t\n\f\r ]/g;
const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

/** Bytes per `String.fromCharCode` call: well under any engine's limit on arguments. */
const CHUNK = 0x8000;

/**
 * `Uint8Array.fromBase64` (standard alphabet, loose last chunk) with `atob`: the text is checked
 * first, as `atob` also takes what `fromBase64` refuses (a lone padding character, say).
 *
 * @param text Standard base64, padded or not.
 * @returns The bytes.
 * @throws {SyntaxError} When the text is not base64.
 */
export function decodeBase64Portable(text: string): Uint8Array {
  const clean = text.replace(BASE64_SPACE, "");
  const padded = clean.endsWith("=");
  if (
    !BASE64_TEXT.test(clean) || (padded ? clean.length % 4 !== 0 : clean.length % 4 === 1)
  ) {
    throw new SyntaxError("Cannot decode base64: the text is not standard base64");
  }
  const binary = atob(clean);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * Standard base64 of some bytes, with `btoa`.
 *
 * @param bytes The bytes.
 * @returns Padded standard base64, without line breaks.
 */
export function encodeBase64Portable(bytes: Uint8Array): string {
  let binary = "";
  for (let at = 0; at < bytes.byteLength; at += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(at, at + CHUNK));
  }
  return btoa(binary);
}

/**
 * Bytes from an even number of hex digits, without `Uint8Array.fromHex`.
 *
 * @param hex Lower- or upper-case hex digits, an even number of them.
 * @returns The bytes.
 * @throws {SyntaxError} When the text is not an even number of hex digits.
 */
export function decodeHexPortable(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new SyntaxError("Cannot decode hex: not an even number of hex digits");
  }
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/**
 * Lower-case hex digits of some bytes, without `Uint8Array.prototype.toHex`.
 *
 * @param bytes The bytes.
 * @returns Two hex digits per byte.
 */
export function encodeHexPortable(bytes: Uint8Array): string {
  let hex = "";
  for (const b of bytes) hex += (b < 16 ? "0" : "") + b.toString(16);
  return hex;
}

/**
 * Decodes standard base64 (padding optional, ASCII whitespace skipped).
 *
 * @param text The base64 text.
 * @returns The bytes, in a buffer of their own.
 * @throws {SyntaxError} When the text is not base64.
 */
export const decodeBase64: (text: string) => Uint8Array = NATIVE.fromBase64
  ? (text) => NATIVE.fromBase64!(text)
  : decodeBase64Portable;

/**
 * Encodes bytes as padded standard base64 without line breaks.
 *
 * @param bytes The bytes.
 * @returns The base64 text.
 */
export const encodeBase64: (bytes: Uint8Array) => string = PROTO.toBase64
  ? (bytes) => (bytes as unknown as Required<NativeMethods>).toBase64()
  : encodeBase64Portable;

/**
 * Decodes an even number of hex digits.
 *
 * @param hex Lower- or upper-case hex digits, an even number of them.
 * @returns The bytes.
 */
export const decodeHex: (hex: string) => Uint8Array = NATIVE.fromHex
  ? (hex) => NATIVE.fromHex!(hex)
  : decodeHexPortable;

/**
 * Encodes bytes as lower-case hex digits.
 *
 * @param bytes The bytes.
 * @returns Two hex digits per byte.
 */
export const encodeHex: (bytes: Uint8Array) => string = PROTO.toHex
  ? (bytes) => (bytes as unknown as Required<NativeMethods>).toHex()
  : encodeHexPortable;
