/**
 * Base64 and hex for the serializer and the CBOR fast paths, on every runtime the SDK supports:
 * `Uint8Array.fromBase64`, `toBase64`, `fromHex` and `toHex` where the runtime has them (Deno,
 * Node 25 and later), `Buffer` from `node:buffer` otherwise (Node 20 to 24).
 *
 * @module
 */
import { Buffer } from "node:buffer";

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

function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * `Uint8Array.fromBase64` (standard alphabet, loose last chunk) with `Buffer`: `Buffer` skips
 * what is not base64, so the text is checked first, and the bytes are copied out of `Buffer`'s
 * shared pool into an array of their own.
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
  return new Uint8Array(Buffer.from(clean, "base64"));
}

/**
 * Standard base64 of some bytes, with `Buffer`.
 *
 * @param bytes The bytes.
 * @returns Padded standard base64, without line breaks.
 */
export function encodeBase64Portable(bytes: Uint8Array): string {
  return bufferOf(bytes).toString("base64");
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
  : (hex) => new Uint8Array(Buffer.from(hex, "hex"));

/**
 * Encodes bytes as lower-case hex digits.
 *
 * @param bytes The bytes.
 * @returns Two hex digits per byte.
 */
export const encodeHex: (bytes: Uint8Array) => string = PROTO.toHex
  ? (bytes) => (bytes as unknown as Required<NativeMethods>).toHex()
  : (bytes) => bufferOf(bytes).toString("hex");
