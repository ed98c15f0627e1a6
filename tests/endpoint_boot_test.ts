/**
 * `funcx-endpoint enable-on-boot` / `disable-on-boot` as a user runs them: the user unit goes in
 * `$XDG_CONFIG_HOME/systemd/user`, the system unit (as root) in `/etc/systemd/system` with
 * `User=`; `systemd-analyze verify` accepts both; enabling again changes nothing, a changed unit
 * is rewritten, disabling removes it, and disabling what is not there says so (exit 1). Where
 * systemd is not the running init (these machines), each command says it did not call systemctl
 * and prints what to run.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, type CliResult } from "./_endpoint_helpers.ts";

async function verify(unit: string, user: boolean, runtimeDir: string): Promise<CliResult> {
  const out = await new Deno.Command("systemd-analyze", {
    args: ["verify", ...(user ? ["--user"] : []), unit],
    env: { XDG_RUNTIME_DIR: runtimeDir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const systemdRuns = await Deno.stat("/run/systemd/system").then((s) => s.isDirectory, () => false);

Deno.test("enable-on-boot and disable-on-boot write, verify and remove systemd units", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-boot-" });
  // A space in the path: the unit must quote it.
  const configDir = join(dir, "my endpoints");
  const xdg = join(dir, "xdg");
  const runtimeDir = join(dir, "run");
  await Deno.mkdir(runtimeDir);
  const env = { FUNCX_CONFIG_DIR: configDir, XDG_CONFIG_HOME: xdg, NO_COLOR: "1" };
  const name = `boot-${crypto.randomUUID().slice(0, 8)}`;
  const systemUnit = `/etc/systemd/system/funcx-endpoint-${name}.service`;
  try {
    await t.step("an endpoint that is not configured gets no unit", async () => {
      const r = await cli(["enable-on-boot", name, "--user"], env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`Endpoint "${name}" is not configured`));
    });
    assert.equal((await cli(["configure", name], env)).code, 0);
    const userUnit = join(xdg, "systemd", "user", `funcx-endpoint-${name}.service`);

    await t.step("--user writes a user unit that systemd-analyze verify accepts", async () => {
      const r = await cli(["enable-on-boot", name, "--user"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Wrote the unit ".*funcx-endpoint-${name}\\.service"`));
      if (!systemdRuns) {
        assert.match(r.stdout, /systemd is not running on this machine/);
        assert.match(
          r.stdout,
          new RegExp(
            `systemctl --user daemon-reload && systemctl --user enable funcx-endpoint-${name}`,
          ),
        );
      }
      assert.match(r.stdout, /loginctl enable-linger/);
      const text = await Deno.readTextFile(userUnit);
      assert.match(text, new RegExp(`^ExecStart=.* start ${name} --foreground$`, "m"));
      assert.match(text, new RegExp(`^Environment="FUNCX_CONFIG_DIR=${configDir}"$`, "m"));
      assert.match(text, /^WantedBy=default\.target$/m);
      assert.doesNotMatch(text, /^User=/m);
      const v = await verify(userUnit, true, runtimeDir);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stderr.trim(), "");
    });

    await t.step("enabling again changes nothing; a changed unit is rewritten", async () => {
      const before = await Deno.stat(userUnit);
      const again = await cli(["enable-on-boot", name, "--user"], env);
      assert.equal(again.code, 0);
      assert.match(again.stdout, /is already written and up to date/);
      assert.equal((await Deno.stat(userUnit)).mtime?.getTime(), before.mtime?.getTime());
      const good = await Deno.readTextFile(userUnit);
      await Deno.writeTextFile(userUnit, good.replace("RestartSec=10", "RestartSec=1"));
      const fixed = await cli(["enable-on-boot", name, "--user"], env);
      assert.match(fixed.stdout, /Rewrote the unit/);
      assert.equal(await Deno.readTextFile(userUnit), good);
    });

    await t.step("disable-on-boot removes it; a second time it says there is none", async () => {
      const r = await cli(["disable-on-boot", name, "--user"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Removed the unit/);
      await assert.rejects(Deno.stat(userUnit), Deno.errors.NotFound);
      const none = await cli(["disable-on-boot", name, "--user"], env);
      assert.equal(none.code, 1);
      assert.match(
        none.stderr,
        new RegExp(`Endpoint "${name}" has no user boot unit: ".*" does not exist`),
      );
    });

    await t.step("the system unit runs as the account, in /etc/systemd/system", async () => {
      const r = await cli(["enable-on-boot", name], env);
      if (Deno.uid() !== 0) {
        assert.equal(r.code, 1);
        assert.match(r.stderr, /needs root: run this with sudo, or add --user/);
        return;
      }
      assert.equal(r.code, 0, r.stderr);
      const text = await Deno.readTextFile(systemUnit);
      assert.match(text, /^User=root$/m);
      assert.match(text, /^WantedBy=multi-user\.target$/m);
      const v = await verify(systemUnit, false, runtimeDir);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stderr.trim(), "");
      const off = await cli(["disable-on-boot", name], env);
      assert.equal(off.code, 0, off.stderr);
      await assert.rejects(Deno.stat(systemUnit), Deno.errors.NotFound);
    });
  } finally {
    await Deno.remove(systemUnit).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
