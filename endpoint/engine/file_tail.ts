/**
 * The end of a log file, quoted in the errors of a worker or a block that died, so that the
 * reason is seen where the failure is reported.
 *
 * @module
 */

/** Last `bytes` of a file, as text (`""` when it cannot be read). */
export async function fileTail(path: string, bytes = 2000): Promise<string> {
  try {
    using f = await Deno.open(path);
    const size = (await f.stat()).size;
    await f.seek(Math.max(0, size - bytes), Deno.SeekMode.Start);
    const buf = new Uint8Array(Math.min(size, bytes));
    let at = 0;
    while (at < buf.length) {
      const n = await f.read(buf.subarray(at));
      if (n === null) break;
      at += n;
    }
    return new TextDecoder().decode(buf.subarray(0, at));
  } catch {
    return "";
  }
}
