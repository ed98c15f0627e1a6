/**
 * `funcx-endpoint self-diagnostic` against a real service and broker: every check passes on a
 * working setup, and each check fails, naming its fix, when that one thing is broken for real:
 * a wrong service address, a garbage token and a wrong client secret, a service that hands out
 * a broker login the broker refuses, a Slurm config with no `sbatch` on PATH, too little disk
 * (a threshold), a service whose clock runs 10 minutes ahead (libfaketime), and a TLS front
 * whose certificate is not trusted (and is, given its CA with DENO_CERT).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePorts } from "./harness/_os.ts";
import { createVhost, deleteVhost, type ServiceHandle, startService } from "./harness/stack.ts";
import { type CliResult, serviceEnv, writeConfig } from "./_endpoint_helpers.ts";

interface Check {
  check: string;
  status: "pass" | "fail" | "skip";
  detail: string;
  fix?: string;
}

function checksOf(r: CliResult): Map<string, Check> {
  let doc: { ok: boolean; checks: Check[] };
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    throw new Error(`Not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  assert.equal(doc.ok, r.code === 0, `ok ${doc.ok} but exit ${r.code}`);
  return new Map(doc.checks.map((c) => [c.check, c]));
}

function statuses(checks: Map<string, Check>): Record<string, string> {
  return Object.fromEntries([...checks].map(([k, c]) => [k, c.status]));
}

/** The libfaketime preload library of this machine (Debian's `faketime`). */
async function libfaketime(): Promise<string> {
  for (const arch of ["x86_64-linux-gnu", "aarch64-linux-gnu"]) {
    const p = `/usr/lib/${arch}/faketime/libfaketime.so.1`;
    if (await Deno.stat(p).then(() => true, () => false)) return p;
  }
  throw new Error("libfaketime is not installed (Debian package faketime)");
}

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" }).output();
  assert.ok(out.success, `openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A TLS front for `target` (127.0.0.1:port) with `cert`/`key`; returns its port and a closer. */
function tlsFront(targetPort: number, cert: string, key: string) {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
  const conns = new Set<Deno.Conn>();
  const done = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      void (async () => {
        try {
          const up = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
          conns.add(up);
          await Promise.allSettled([
            conn.readable.pipeTo(up.writable),
            up.readable.pipeTo(conn.writable),
          ]);
        } catch {
          // a handshake the client gave up on
        }
      })();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      await done;
    },
  };
}

Deno.test("self-diagnostic: all checks pass, and each fails when its one thing is broken", async (t) => {
  await using s = await serviceEnv();
  const name = "diag";
  assert.equal((await s.cli(["configure", name])).code, 0);
  const diag = (args: string[] = [], env: Record<string, string> = {}) =>
    s.cli(["self-diagnostic", name, "--json", ...args], env);
  /** Runs `fn` against a second service of its own (vhost, database, API client). */
  const withOtherService = async (
    options: { args?: string[]; env?: Record<string, string>; wrongBrokerPassword?: boolean },
    fn: (svc: ServiceHandle) => Promise<void>,
  ) => {
    const vhost = `diag-${crypto.randomUUID().slice(0, 8)}`;
    const amqpUrl = await createVhost(s.access, vhost);
    const dir = await Deno.makeTempDir({ dir: s.dir });
    let svc: ServiceHandle | undefined;
    try {
      const args = [...(options.args ?? [])];
      if (options.wrongBrokerPassword) {
        const wrong = new URL(amqpUrl);
        wrong.password = "wrong-password";
        args.push("--public-amqp-url", wrong.toString());
      }
      svc = await startService({
        dir,
        amqpUrl,
        args,
        ...(options.env ? { env: options.env } : {}),
      });
      await fn(svc);
    } finally {
      await svc?.process.stop();
      await deleteVhost(s.access, vhost).catch(() => {});
      // endpoint.json may now name an endpoint of that service: start afresh.
      await Deno.remove(join(s.configDir, name, "endpoint.json")).catch(() => {});
    }
  };

  await t.step("a working setup passes every check, exit 0", async () => {
    const r = await diag();
    const c = checksOf(r);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(statuses(c), {
      service: "pass",
      clock: "pass",
      token: "pass",
      broker: "pass",
      tls: "skip",
      disk: "pass",
      commands: "skip",
    });
    assert.match(c.get("token")!.detail, /Logged in as "dev"/);
    assert.match(c.get("broker")!.detail, /Logged in to the broker/);
    // The human form says the same.
    const text = await s.cli(["self-diagnostic", name]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^PASS {2}service/m);
    assert.match(text.stdout, /All checks passed for endpoint "diag"/);
  });

  await t.step("with the endpoint running, the broker check reads the daemon's link", async () => {
    const start = await s.cli(["start", name]);
    assert.equal(start.code, 0, start.stderr);
    try {
      const r = await diag();
      const c = checksOf(r);
      assert.equal(r.code, 0, r.stdout);
      assert.match(c.get("broker")!.detail, /The running daemon \(pid \d+\) is logged in/);
    } finally {
      assert.equal((await s.cli(["stop", name])).code, 0);
    }
  });

  await t.step("a wrong service address fails the service check", async () => {
    const [port] = freePorts(1);
    const r = await diag([], { FUNCX_SERVICE_ADDRESS: `http://127.0.0.1:${port}` });
    const c = checksOf(r);
    assert.equal(r.code, 1);
    assert.equal(c.get("service")!.status, "fail");
    assert.match(c.get("service")!.detail, new RegExp(`Cannot reach the service at .*:${port}`));
    assert.match(c.get("service")!.fix!, /funcx_service_address/);
    assert.equal(c.get("token")!.status, "skip");
    assert.equal(c.get("broker")!.status, "skip");
    const text = await s.cli(["self-diagnostic", name], {
      FUNCX_SERVICE_ADDRESS: `http://127.0.0.1:${port}`,
    });
    assert.match(text.stdout, /^FAIL {2}service/m);
    assert.match(text.stdout, /fix: Check funcx_service_address/);
    assert.match(text.stdout, /1 check failed for endpoint "diag"/);
  });

  await t.step("a garbage token and a wrong client secret fail the token check", async () => {
    for (
      const env of [
        { FUNCX_SDK_CLIENT_ID: "", FUNCX_SDK_CLIENT_SECRET: "", FUNCX_SDK_ACCESS_TOKEN: "garbage" },
        { FUNCX_SDK_CLIENT_SECRET: "not-the-secret" },
      ]
    ) {
      const r = await diag([], env);
      const c = checksOf(r);
      assert.equal(r.code, 1, JSON.stringify(env));
      assert.equal(c.get("service")!.status, "pass");
      assert.equal(c.get("token")!.status, "fail", c.get("token")!.detail);
      assert.match(c.get("token")!.fix!, /FUNCX_SDK_CLIENT_ID/);
      assert.equal(c.get("broker")!.status, "skip");
    }
  });

  await t.step("a Slurm config without sbatch on PATH fails the commands check", async () => {
    await writeConfig(s.configDir, name, "engine:\n  provider:\n    type: slurm\n");
    const empty = await Deno.makeTempDir({ dir: s.dir });
    const r = await diag([], { PATH: empty });
    const c = checksOf(r);
    assert.equal(r.code, 1);
    assert.equal(c.get("commands")!.status, "fail");
    assert.match(c.get("commands")!.detail, /sbatch \(for engine\.provider\.type: slurm\)/);
    assert.match(c.get("commands")!.fix!, /PATH/);
    // Debian's slurm-client is installed for the tests: with its PATH the check passes.
    const ok = checksOf(await diag([], { PATH: "/usr/bin:/bin" }));
    assert.equal(ok.get("commands")!.status, "pass");
    assert.match(ok.get("commands")!.detail, /\/sbatch/);
    await writeConfig(s.configDir, name, "");
  });

  await t.step("too little disk for the journal fails the disk check", async () => {
    const r = await diag(["--min-free-disk", "1000000000"]);
    const c = checksOf(r);
    assert.equal(r.code, 1);
    assert.equal(c.get("disk")!.status, "fail");
    assert.match(c.get("disk")!.detail, /MiB free for the result journal .* \(need 1000000000\)/);
    const bad = await diag(["--min-free-disk", "lots"]);
    assert.equal(bad.code, 65);
    assert.match(bad.stderr, /Invalid --min-free-disk "lots"/);
  });

  await t.step("a broker login the broker refuses fails the broker check", async () => {
    // No management URL: every endpoint gets the public URL's login, here a wrong one.
    await withOtherService({ wrongBrokerPassword: true }, async (svc) => {
      const r = await diag([], svc.env);
      const c = checksOf(r);
      assert.equal(r.code, 1);
      assert.equal(c.get("token")!.status, "pass");
      assert.equal(c.get("broker")!.status, "fail");
      assert.match(c.get("broker")!.detail, /ACCESS.REFUSED/);
      assert.doesNotMatch(c.get("broker")!.detail, /wrong-password/);
      assert.match(c.get("broker")!.fix!, /public-amqp-url/);
    });
  });

  await t.step("a service whose clock is 10 minutes ahead fails the clock check", async () => {
    const env = { LD_PRELOAD: await libfaketime(), FAKETIME: "+600s" };
    await withOtherService({ env }, async (svc) => {
      const c = checksOf(await diag([], svc.env));
      assert.equal(c.get("clock")!.status, "fail");
      assert.match(c.get("clock")!.detail, /clock is (599|600|601)(\.\d)? s behind the service's/);
      assert.match(c.get("clock")!.fix!, /NTP/);
      const lenient = checksOf(await diag(["--max-clock-skew", "900"], svc.env));
      assert.equal(lenient.get("clock")!.status, "pass");
      assert.equal(lenient.get("token")!.status, "pass");
    });
  });

  await t.step("an untrusted TLS certificate fails the tls check; DENO_CERT fixes it", async () => {
    const dir = await Deno.makeTempDir({ dir: s.dir });
    // A private CA and a certificate it signs for 127.0.0.1.
    const caFile = join(dir, "ca.pem");
    const certFile = join(dir, "cert.pem");
    const keyFile = join(dir, "key.pem");
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await openssl(["req", "-x509", ...ec, "-days", "1", "-subj", "/CN=funcX test CA"].concat(
      ["-keyout", join(dir, "ca.key"), "-out", caFile],
    ));
    await openssl(["req", ...ec, "-subj", "/CN=127.0.0.1", "-keyout", keyFile].concat(
      ["-out", join(dir, "cert.csr")],
    ));
    await Deno.writeTextFile(
      join(dir, "ext.cnf"),
      "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      join(dir, "cert.csr"),
      "-CA",
      caFile,
      "-CAkey",
      join(dir, "ca.key"),
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      join(dir, "ext.cnf"),
      "-out",
      certFile,
    ]);
    const port = Number(new URL(s.service.address).port);
    const front = tlsFront(
      port,
      await Deno.readTextFile(certFile),
      await Deno.readTextFile(keyFile),
    );
    try {
      const env = { FUNCX_SERVICE_ADDRESS: `https://127.0.0.1:${front.port}` };
      const r = await diag([], env);
      const c = checksOf(r);
      assert.equal(r.code, 1);
      assert.equal(c.get("tls")!.status, "fail");
      assert.match(c.get("tls")!.detail, new RegExp(`service 127\\.0\\.0\\.1:${front.port}`));
      assert.match(c.get("tls")!.fix!, /DENO_CERT/);
      assert.equal(c.get("service")!.status, "fail");
      const trusted = await diag([], { ...env, DENO_CERT: caFile });
      const t2 = checksOf(trusted);
      assert.equal(trusted.code, 0, trusted.stdout + trusted.stderr);
      assert.equal(t2.get("tls")!.status, "pass");
      assert.equal(t2.get("token")!.status, "pass");
    } finally {
      await front.close();
    }
  });
});
