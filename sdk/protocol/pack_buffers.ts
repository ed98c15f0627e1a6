/**
 * funcX's buffer framing: strings packed as `<length>\n<string>`, concatenated. A task buffer is
 * the function's packed code followed by its packed arguments.
 *
 * @module
 */
import { DeserializationError } from "./serialization_errors.ts";

/**
 * Packs strings into one: each as `<length>\n<string>`, concatenated (funcX's `pack_buffers`).
 *
 * The length is the JavaScript string length in UTF-16 code units, not bytes or code points:
 * an emoji counts 2. Python's funcX counts code points; the two agree for the ASCII that `cb`
 * and `js` payloads (and most function sources) are made of.
 *
 * @param buffers The strings to pack.
 * @returns The packed string.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packBuffers } from "@funcx/sdk/protocol";
 * assert.ok(packBuffers(["ab", "🙂"]) === "2\nab2\n🙂");
 * ```
 */
export function packBuffers(buffers: readonly string[]): string {
  let out = "";
  for (const buf of buffers) {
    if (typeof buf !== "string") {
      throw new TypeError(`Cannot pack buffers: expected strings, got ${typeof buf}`);
    }
    out += `${buf.length}\n${buf}`;
  }
  return out;
}

/**
 * Splits a string made by {@linkcode packBuffers} back into its parts.
 *
 * @param packed The packed string; `""` gives no parts.
 * @returns The strings, in order.
 * @throws {DeserializationError} On a missing or non-decimal length, or a truncated part.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packBuffers, unpackBuffers } from "@funcx/sdk/protocol";
 * const parts = unpackBuffers(packBuffers(["a\nb", ""]));
 * assert.ok(parts.length === 2 && parts[0] === "a\nb" && parts[1] === "");
 * ```
 */
export function unpackBuffers(packed: string): string[] {
  if (typeof packed !== "string") {
    throw new DeserializationError(
      `Cannot unpack buffers: expected a string, got ${typeof packed}`,
    );
  }
  const out: string[] = [];
  let pos = 0;
  const total = packed.length;
  while (pos < total) {
    const nl = packed.indexOf("\n", pos);
    if (nl < 0) {
      throw new DeserializationError(
        `Cannot unpack buffers: buffer ${out.length} has no length line at offset ${pos}`,
      );
    }
    if (nl === pos || nl - pos > 15) {
      throw new DeserializationError(
        `Cannot unpack buffers: buffer ${out.length} has a bad length ${
          JSON.stringify(packed.slice(pos, Math.min(nl, pos + 20)))
        }`,
      );
    }
    let len = 0;
    for (let i = pos; i < nl; i++) {
      const d = packed.charCodeAt(i) - 48;
      if (d < 0 || d > 9) {
        throw new DeserializationError(
          `Cannot unpack buffers: buffer ${out.length} has a bad length ${
            JSON.stringify(packed.slice(pos, nl))
          }`,
        );
      }
      len = len * 10 + d;
    }
    const start = nl + 1;
    const end = start + len;
    if (end > total) {
      throw new DeserializationError(
        `Cannot unpack buffers: buffer ${out.length} is truncated (length ${len}, ${
          total - start
        } left)`,
      );
    }
    out.push(packed.slice(start, end));
    pos = end;
  }
  return out;
}
