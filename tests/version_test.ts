/**
 * One version for the SDK, the binaries and the release tag: `deno.json`'s `version`
 * (`scripts/versions.ts`, which the release workflows run with their tag).
 */
import assert from "node:assert/strict";
import config from "../deno.json" with { type: "json" };
import { versionProblems, versionStrings } from "../scripts/versions.ts";

const ROOT = new URL("../", import.meta.url);

Deno.test("versions: every version string agrees with deno.json, and the README downloads the latest", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  assert.deepEqual(versionProblems({ readme }), []);
  for (const v of Object.values(versionStrings())) assert.equal(v, config.version);
  assert.match(readme, /github\.com\/\$FUNCX_REPO\/releases\/latest\/download"/);
});

Deno.test("versions: a tag or a README line that differs is named", () => {
  assert.deepEqual(versionProblems({ tag: `v${config.version}` }), []);
  const [tag] = versionProblems({ tag: "v9.9.9" });
  assert.match(tag ?? "", /the tag "v9\.9\.9" is not "v\d/);
  const [line] = versionProblems({ readme: "curl -fLO https://x/y/releases/download/v0.1.0/f" });
  assert.match(line ?? "", /fixed release \(releases\/download\/v0\.1\.0\)/);
});

Deno.test("versions: both release workflows start on v* tags and check the tag", async () => {
  for (const name of ["release.yml", "publish-jsr.yml"]) {
    const text = await Deno.readTextFile(new URL(`.github/workflows/${name}`, ROOT));
    assert.match(text, /tags: \["v\*"\]/, name);
    assert.match(text, /scripts\/versions\.ts "\$GITHUB_REF_NAME"/, name);
  }
});
