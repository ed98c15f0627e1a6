/**
 * The house rules of the README's "Code map", checked on the real import graph (`deno info
 * --json` from every entry point): which folder may import which, and no import circles.
 */
import assert from "node:assert/strict";
import { relative } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;

/** Every program and package entry of the project. */
const ENTRIES = [
  "mod.ts",
  "sdk/protocol/mod.ts",
  "cli/funcx.ts",
  "cli/funcx_endpoint.ts",
  "cli/funcx_service.ts",
  "endpoint/engine/mod.ts",
  "endpoint/engine/worker_main.ts",
  "endpoint/engine/manager_main.ts",
  "endpoint/engine/sandbox_worker.ts",
  "endpoint/user_endpoint_main.ts",
];

/** Which top-level folders each folder may import (besides itself). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  "sdk": [],
  "service": ["sdk"],
  "endpoint": ["sdk"],
  "cli": ["sdk", "service", "endpoint"],
};

interface InfoModule {
  specifier: string;
  dependencies?: Array<{ code?: { specifier?: string }; type?: { specifier?: string } }>;
}

/** The project's own modules (paths from the root) and their imports of each other. */
async function importGraph(): Promise<Map<string, Set<string>>> {
  const graph = new Map<string, Set<string>>();
  for (const entry of ENTRIES) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
    for (const m of info.modules) {
      const from = local(m.specifier);
      if (from === undefined) continue;
      const edges = graph.get(from) ?? new Set<string>();
      graph.set(from, edges);
      for (const d of m.dependencies ?? []) {
        for (const spec of [d.code?.specifier, d.type?.specifier]) {
          const to = spec === undefined ? undefined : local(spec);
          if (to !== undefined) edges.add(to);
        }
      }
    }
  }
  return graph;
}

function local(specifier: string): string | undefined {
  if (!specifier.startsWith("file://")) return undefined;
  const path = relative(ROOT, new URL(specifier).pathname);
  return path.startsWith("..") ? undefined : path;
}

/** The folder a module belongs to: `sdk` for the package root `mod.ts`. */
function folder(path: string): string {
  return path === "mod.ts" ? "sdk" : path.split("/")[0]!;
}

/** Strongly connected components of more than one module, or a module importing itself. */
function circles(graph: Map<string, Set<string>>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)?.has(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

Deno.test("code map: the import graph has no circles and keeps the folders' rules", async (t) => {
  const graph = await importGraph();
  assert.ok(graph.size > 100, `only ${graph.size} modules found: is deno info working?`);

  await t.step("no module is part of an import circle", () => {
    assert.deepEqual(circles(graph), []);
  });

  await t.step("each folder imports only the folders the code map allows", () => {
    const broken: string[] = [];
    for (const [from, tos] of graph) {
      const allowed = MAY_IMPORT[folder(from)];
      if (allowed === undefined) continue;
      for (const to of tos) {
        const target = folder(to);
        if (to === "deno.json" || target === folder(from) || allowed.includes(target)) continue;
        broken.push(`${from} -> ${to}`);
      }
    }
    assert.deepEqual(broken, []);
  });
});

Deno.test("code map: circles() finds a circle and nothing else", () => {
  const g = new Map([
    ["a", new Set(["b"])],
    ["b", new Set(["c"])],
    ["c", new Set(["a"])],
    ["d", new Set(["a"])],
  ]);
  assert.deepEqual(circles(g), [["a", "b", "c"]]);
  assert.deepEqual(circles(new Map([["a", new Set(["b"])], ["b", new Set<string>()]])), []);
});
