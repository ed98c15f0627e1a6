import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "./config.ts";
import { IdentityMap, mappedAccountName, parseIdentityMapping } from "./identity_map.ts";

Deno.test("mappedAccountName(): exact names, patterns with groups and same_name, first rule wins", () => {
  const m = parseIdentityMapping(
    "m.yaml",
    [
      "rules:",
      "  - user: ann",
      "    account: ann_h",
      '  - match: "(.+)@uni\\\\.edu"',
      '    account: "u_$1"',
      "  - same_name: true",
    ].join("\n"),
  );
  assert.equal(mappedAccountName(m, "ann"), "ann_h");
  assert.equal(mappedAccountName(m, "bo@uni.edu"), "u_bo");
  // The pattern must match the whole name; then same_name takes it.
  assert.equal(mappedAccountName(m, "x-bo@uni.edu.org"), "x-bo@uni.edu.org");
  assert.equal(mappedAccountName(parseIdentityMapping("m.yaml", ""), "ann"), undefined);
});

Deno.test("parseIdentityMapping(): a typo is an error naming the file and the field", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["rules:\n  - user: ann\n    acount: a\n", "rules.0.acount", /unknown field "rules.0.acount"/],
    ["rules:\n  - user: ann\n", "rules.0.account", /field "rules.0.account"/],
    ["rules:\n  - match: '('\n    account: a\n", "rules.0.match", /regular expression/],
    ["rules:\n  - same_name: true\n    user: a\n", "rules.0", /exactly one of/],
    ["allow_root: yes please\n", "allow_root", /field "allow_root"/],
    ["rules: [\n", "", /Invalid YAML in "site\/m.yaml"/],
  ];
  for (const [text, path, message] of cases) {
    let err: unknown;
    try {
      parseIdentityMapping("site/m.yaml", text);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, `no error for ${JSON.stringify(text)}`);
    assert.equal(err.file, "site/m.yaml");
    assert.equal(err.path, path);
    assert.match(err.message, /site\/m\.yaml/);
    assert.match(err.message, message);
  }
});

Deno.test("IdentityMap: refuses root unless allowed, missing accounts, and a file broken while running", async () => {
  const dir = await Deno.makeTempDir();
  const file = join(dir, "identity_mapping.yaml");
  await Deno.writeTextFile(
    file,
    "rules:\n  - user: admin\n    account: root\n  - same_name: true\n",
  );
  const map = await IdentityMap.load(file);
  const root = await map.resolve("admin");
  assert.equal(root.ok, false);
  assert.match(!root.ok ? root.reason : "", /"root" \(uid 0\).*allow_root: true/);
  const missing = await map.resolve("no-such-account-here");
  assert.match(!missing.ok ? missing.reason : "", /which does not exist on this host/);
  assert.match(
    await map.resolve(undefined).then((r) => (!r.ok ? r.reason : "")),
    /does not say which service user/,
  );
  // Root allowed explicitly.
  await Deno.writeTextFile(
    file,
    "allow_root: true\nrules:\n  - user: admin\n    account: root\n",
  );
  await Deno.utime(file, new Date(), new Date(Date.now() + 5_000));
  const allowed = await map.resolve("admin");
  assert.equal(allowed.ok && allowed.account.uid, 0);
  // A typo while running: every task is refused with the file's error, until it is fixed.
  await Deno.writeTextFile(file, "rules:\n  - usr: admin\n");
  await Deno.utime(file, new Date(), new Date(Date.now() + 10_000));
  const broken = await map.resolve("admin");
  assert.match(!broken.ok ? broken.reason : "", /unknown field "rules\.0\.usr"/);
  assert.match(!broken.ok ? broken.reason : "", new RegExp(file.replaceAll("/", "\\/")));
  await Deno.writeTextFile(file, "allow_root: true\nrules:\n  - same_name: true\n");
  await Deno.utime(file, new Date(), new Date(Date.now() + 15_000));
  assert.equal((await map.resolve("root")).ok, true);
  await assert.rejects(() => IdentityMap.load(join(dir, "absent.yaml")), /Cannot read/);
  await Deno.remove(dir, { recursive: true });
});
