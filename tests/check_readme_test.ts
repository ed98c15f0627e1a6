/** `scripts/check_readme.ts`: which blocks it takes from a README and how it points their imports. */
import assert from "node:assert/strict";
import { localImports, tsBlocks } from "../scripts/check_readme.ts";

Deno.test("check_readme: ts blocks are found with their line; other languages are not", () => {
  const md = "# T\n\n```ts\nconst a = 1;\n```\n\n```sh\necho no\n```\n```typescript\nlet b;\n```\n";
  assert.deepEqual(tsBlocks("R.md", md), [
    { file: "R.md", line: 3, code: "const a = 1;\n" },
    { file: "R.md", line: 10, code: "let b;\n" },
  ]);
});

Deno.test("check_readme: SDK imports point at the local mod.ts", () => {
  const code = 'import { A } from "jsr:@funcx/sdk";\nimport { B } from "./mod.ts";\n' +
    "import { C } from '@funcx/sdk/protocol';\nconst d = await import(\"@funcx/sdk\");\n";
  assert.equal(
    localImports(code, "../mod.ts"),
    'import { A } from "../mod.ts";\nimport { B } from "../mod.ts";\n' +
      "import { C } from '../sdk/protocol/mod.ts';\nconst d = await import(\"../mod.ts\");\n",
  );
  assert.equal(localImports('import x from "npm:y";', "../mod.ts"), 'import x from "npm:y";');
});
