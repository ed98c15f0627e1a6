/**
 * Type-checks every TypeScript block of `README.md` and `sdk/README.md` (part of `deno task
 * gate`): each ```ts block becomes a module in a temporary directory, its
 * `jsr:@funcx/sdk` / `@funcx/sdk` / `./mod.ts` imports pointed at the local `mod.ts`, and all are
 * given to one `deno check`. A block that is not a whole program (a fragment that uses a
 * variable from the text around it) says what it assumes in a `declare` line of its own.
 *
 * Usage: `deno run -A scripts/check_readme.ts`
 *
 * @module
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const ROOT = new URL("../", import.meta.url).pathname;
const FILES = ["README.md", "sdk/README.md"];

/** A ```ts block of a Markdown file and the line it starts on. */
export interface CodeBlock {
  file: string;
  line: number;
  code: string;
}

/** The ```ts (and ```typescript) blocks of `markdown`. */
export function tsBlocks(file: string, markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const re = /^```(?:ts|typescript)[^\S\n]*\n([\s\S]*?)^```/gm;
  for (const m of markdown.matchAll(re)) {
    const line = markdown.slice(0, m.index).split("\n").length;
    blocks.push({ file, line, code: m[1]! });
  }
  return blocks;
}

/** `code` with its SDK imports pointed at `mod` (the specifier of the local mod.ts). */
export function localImports(code: string, mod: string): string {
  return code.replace(
    /(from\s+|import\(\s*)(["'])(?:jsr:@funcx\/sdk|@funcx\/sdk|\.\/mod\.ts)(\/protocol)?\2/g,
    (_m, lead: string, q: string, sub: string | undefined) =>
      `${lead}${q}${sub ? mod.replace(/mod\.ts$/, "sdk/protocol/mod.ts") : mod}${q}`,
  );
}

if (import.meta.main) {
  // Outside the repository, so a lint or format run meanwhile never sees the blocks.
  const dir = await Deno.makeTempDir({ prefix: "funcx-readme-check-" });
  try {
    const files: string[] = [];
    const where = new Map<string, CodeBlock>();
    for (const file of FILES) {
      const text = await Deno.readTextFile(join(ROOT, file));
      for (const block of tsBlocks(file, text)) {
        const name = join(dir, `${file.replace(/\W/g, "_")}_${block.line}.ts`);
        const mod = pathToFileURL(join(ROOT, "mod.ts")).href;
        // Each block is a module of its own (top-level await, no clashes between blocks).
        await Deno.writeTextFile(name, `${localImports(block.code, mod)}\nexport {};\n`);
        files.push(name);
        where.set(name, block);
      }
    }
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--quiet", `--config=${join(ROOT, "deno.json")}`, ...files],
      stdout: "piped",
      stderr: "piped",
    }).output();
    let out = new TextDecoder().decode(res.stderr) + new TextDecoder().decode(res.stdout);
    for (const [name, block] of where) {
      out = out.replaceAll(`file://${name}`, `${block.file} (the ts block at line ${block.line})`);
    }
    if (!res.success) {
      console.error(out);
      console.error(`README TypeScript blocks do not type-check (${files.length} blocks checked)`);
      Deno.exitCode = 1;
    } else console.log(`README TypeScript blocks type-check: ${files.length} blocks`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
