import assert from "node:assert/strict";
import { bootUnitText, systemdWord, unitDirectory, unitName } from "./boot_unit.ts";

Deno.test("systemdWord quotes blanks and quotes, and doubles % and $", () => {
  assert.equal(systemdWord("/usr/bin/deno"), "/usr/bin/deno");
  assert.equal(systemdWord("a b"), '"a b"');
  assert.equal(systemdWord('say "hi"'), '"say \\"hi\\""');
  assert.equal(systemdWord("100%"), "100%%");
  assert.equal(systemdWord("$HOME"), "$$HOME");
  assert.equal(systemdWord(""), '""');
});

Deno.test("bootUnitText: a user unit has no User= and is wanted by default.target", () => {
  const text = bootUnitText({
    name: "laptop",
    configDir: "/home/ada/my endpoints",
    command: ["/usr/bin/deno", "run", "-A", "/opt/funcx/cli/funcx_endpoint.ts"],
    target: { user: true, account: "ada", unitDir: "/home/ada/.config/systemd/user" },
  });
  assert.doesNotMatch(text, /^User=/m);
  assert.match(text, /^WantedBy=default\.target$/m);
  assert.match(text, /^Environment="FUNCX_CONFIG_DIR=\/home\/ada\/my endpoints"$/m);
  assert.match(text, /^EnvironmentFile=-\/home\/ada\/my endpoints\/laptop\/boot\.env$/m);
  assert.match(
    text,
    /^ExecStart=\/usr\/bin\/deno run -A \/opt\/funcx\/cli\/funcx_endpoint\.ts start laptop --foreground$/m,
  );
  assert.throws(
    () =>
      bootUnitText({
        name: "x",
        configDir: "rel",
        command: ["f"],
        target: { user: true, account: "a", unitDir: "/u" },
      }),
    /must be absolute/,
  );
});

Deno.test("unitDirectory: XDG_CONFIG_HOME, else ~/.config; /etc/systemd/system for the system", () => {
  assert.equal(unitDirectory(true, { XDG_CONFIG_HOME: "/x", HOME: "/h" }), "/x/systemd/user");
  assert.equal(unitDirectory(true, { HOME: "/h" }), "/h/.config/systemd/user");
  assert.equal(unitDirectory(false, {}), "/etc/systemd/system");
  assert.throws(() => unitDirectory(true, {}), /HOME is not set/);
  assert.equal(unitName("gpu-1"), "funcx-endpoint-gpu-1.service");
});
