/**
 * `funcx` as a user runs it, against a real service, broker and endpoint: run (a function from a
 * file, a command line), submit, status, results (`--wait`, `--since`, the progress bar on a
 * terminal only), cancel, endpoints, functions, login (client credentials and the device flow),
 * the `--json` schemas, the exit codes, and the README's own crontab lines run under `env -i` with
 * cron's minimal environment.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startStack } from "./harness/stack.ts";
import { denoRunArgs, runDeno } from "./harness/process.ts";
import { addUser } from "./harness/sign_in.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function funcx(args: string[], env: Record<string, string>): Promise<Ran> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: denoRunArgs("cli/funcx.ts", args),
    env,
    clearEnv: true,
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function json(r: Ran): Record<string, unknown> {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

const TASKS_TS = `
export function add(a: number, b: number): number {
  return a + b;
}
export function explode(limit: number): number {
  if (limit < 10) throw new RangeError(\`limit \${limit} is below 10\`);
  return limit;
}
export const square = (n: number) => n * n;
export const when = () => ({ at: new Date(0), big: 2n ** 70n, set: new Set([1]) });
`;

Deno.test("funcx CLI: run, submit, status, results, cancel, endpoints, functions, login, exit codes, cron", async (t) => {
  await using stack = await startStack();
  const dir = await Deno.makeTempDir({ prefix: "funcx-cli-" });
  const home = join(dir, "home");
  await Deno.mkdir(home);
  const denoDir = JSON.parse(
    new TextDecoder().decode(
      (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output()).stdout,
    ),
  ).denoDir as string;
  const env: Record<string, string> = {
    ...stack.service.env,
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: home,
    DENO_DIR: denoDir,
    NO_COLOR: "1",
  };
  const ep = stack.endpoint.endpointId;
  const file = join(dir, "tasks.ts");
  await Deno.writeTextFile(file, TASKS_TS);

  try {
    await t.step("run --shell prints the command's output", async () => {
      const r = await funcx(["run", "-e", ep, "--shell", "echo hello from {0}", '"cron"'], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "hello from cron\n");
    });

    await t.step("run FILE.ts#fn with JSON arguments: the --json schema", async () => {
      const r = await funcx(["run", "-e", ep, `${file}#add`, "40", "2", "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      const out = json(r);
      assert.match(String(out["task_group_id"]), UUID);
      assert.deepEqual(out["counts"], {
        total: 1,
        succeeded: 1,
        failed: 0,
        running: 0,
        waiting: 0,
      });
      assert.equal(out["complete"], true);
      const [task] = out["results"] as Array<Record<string, unknown>>;
      assert.match(String(task!["task_id"]), UUID);
      assert.equal(task!["status"], "success");
      assert.equal(task!["result"], 42);
      const text = await funcx(["run", `${file}#add`, "1", "2"], { ...env, FUNCX_ENDPOINT_ID: ep });
      assert.equal(text.stdout, "3\n");
      const data = json(await funcx(["run", "-e", ep, `${file}#when`, "--json"], env));
      assert.deepEqual((data["results"] as Array<Record<string, unknown>>)[0]!["result"], {
        at: "1970-01-01T00:00:00.000Z",
        big: "1180591620717411303424",
        set: [1],
      });
    });

    await t.step(
      "a failed task: exit 1, the remote error with the user's frames only",
      async () => {
        const r = await funcx(["run", "-e", ep, `${file}#explode`, "3", "--json"], env);
        assert.equal(r.code, 1, r.stderr);
        const [task] = json(r)["results"] as Array<Record<string, unknown>>;
        assert.equal(task!["status"], "failed");
        const error = task!["error"] as Record<string, string>;
        assert.equal(error["code"], "RemoteExecutionError");
        assert.equal(error["name"], "RangeError");
        assert.equal(error["message"], "limit 3 is below 10");
        assert.match(error["stack"]!, /at explode/);
        assert.doesNotMatch(error["stack"]!, /endpoint\/engine\//);
        const text = await funcx(["run", "-e", ep, "--shell", "exit 3"], env);
        assert.equal(text.code, 1);
        assert.match(text.stderr, /ShellCommandFailed: Shell command "exit 3" exited with code 3/);
      },
    );

    let group = "";
    let ids: string[] = [];
    await t.step("submit prints the task ids and exits; status and results follow", async () => {
      const r = await funcx(
        [
          "submit",
          "-e",
          ep,
          "--group",
          "batch-1",
          "--map",
          `${file}#square`,
          "1",
          "2",
          "3",
          "--json",
        ],
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      const out = json(r);
      group = String(out["task_group_id"]);
      ids = out["task_ids"] as string[];
      assert.match(group, UUID);
      assert.equal(out["endpoint_id"], ep);
      assert.match(String(out["function_id"]), UUID);
      assert.equal(ids.length, 3);
      // The same name is the same group.
      const again = json(
        await funcx(
          ["submit", "-e", ep, "--group", "batch-1", `${file}#add`, "1", "1", "--json"],
          env,
        ),
      );
      assert.equal(again["task_group_id"], group);
      ids.push(...again["task_ids"] as string[]);

      const done = json(await funcx(["results", "batch-1", "--wait", "--json"], env));
      assert.equal(done["task_group_id"], group);
      assert.deepEqual(done["counts"], {
        total: 4,
        succeeded: 4,
        failed: 0,
        running: 0,
        waiting: 0,
      });
      const results = done["results"] as Array<Record<string, unknown>>;
      assert.deepEqual(results.map((x) => x["task_id"]).sort(), [...ids].sort());
      assert.deepEqual(results.map((x) => x["result"]).sort(), [1, 2, 4, 9]);

      const status = await funcx(["status", group, "--json"], env);
      assert.equal(status.code, 0, status.stderr);
      const s = json(status);
      assert.equal((s["counts"] as Record<string, number>)["total"], 4);
      assert.deepEqual(
        (s["tasks"] as Array<Record<string, unknown>>).map((x) => x["status"]),
        ["success", "success", "success", "success"],
      );
      const text = await funcx(["status", group], env);
      assert.match(text.stdout, /4 tasks: 4 succeeded, 0 failed, 0 running, 0 waiting/);
    });

    await t.step("results --since: only tasks finished since then", async () => {
      const future = json(
        await funcx(["results", group, "--since", "2999-01-01T00:00:00Z", "--json"], env),
      );
      assert.deepEqual(future["results"], []);
      assert.equal((future["counts"] as Record<string, number>)["total"], 4);
      const past = json(await funcx(["results", group, "--since", "0", "--json"], env));
      const results = past["results"] as Array<Record<string, unknown>>;
      assert.equal(results.length, 4);
      for (const x of results) assert.ok(Date.parse(String(x["completed_at"])) > 0, String(x));
    });

    await t.step("results --wait draws a progress bar on a terminal, none when piped", async () => {
      const submitted = json(
        await funcx(["submit", "-e", ep, "--group", "bar", "--shell", "sleep 1", "--json"], env),
      );
      const cmd = [Deno.execPath(), ...denoRunArgs("cli/funcx.ts", ["results", "bar", "--wait"])]
        .map((a) => `'${a}'`).join(" ");
      // `script` gives the command a terminal, as a person's shell would.
      const tty = await new Deno.Command("script", {
        args: ["-qec", cmd, "/dev/null"],
        env,
        clearEnv: true,
        stdin: "null",
      }).output();
      const seen = new TextDecoder().decode(tty.stdout);
      assert.equal(tty.code, 0, seen);
      assert.match(seen, /\[#{30}\] 1\/1 done, 0 failed, 0 running/);
      const piped = await funcx(["results", "bar", "--wait"], env);
      assert.equal(piped.code, 0);
      assert.doesNotMatch(piped.stderr + piped.stdout, /\[[#x>.]+\]/);
      assert.ok((submitted["task_ids"] as string[]).length === 1);
    });

    await t.step("cancel stops a task; an unknown id exits 65", async () => {
      const s = json(
        await funcx(["submit", "-e", ep, "--group", "slow", "--shell", "sleep 60", "--json"], env),
      );
      const [id] = s["task_ids"] as string[];
      const r = await funcx(["cancel", id!, "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(json(r), { tasks: [{ task_id: id, cancelled: true }] });
      const after = await funcx(["results", "slow", "--json"], env);
      assert.equal(after.code, 1);
      const [task] = json(after)["results"] as Array<Record<string, unknown>>;
      assert.equal((task!["error"] as Record<string, string>)["code"], "TaskCancelled");
      const unknown = await funcx(["cancel", crypto.randomUUID(), "--json"], env);
      assert.equal(unknown.code, 65);
      assert.equal(
        (json(unknown)["tasks"] as Array<Record<string, unknown>>)[0]!["error"],
        "task_not_found",
      );
    });

    await t.step("results of unfinished tasks without --wait exits 75", async () => {
      const s = json(
        await funcx(["submit", "-e", ep, "--group", "later", "--shell", "sleep 30", "--json"], env),
      );
      const r = await funcx(["results", "later", "--json"], env);
      assert.equal(r.code, 75, r.stderr);
      assert.equal(json(r)["complete"], false);
      await funcx(["cancel", ...(s["task_ids"] as string[])], env);
    });

    await t.step("endpoints and functions", async () => {
      const eps = json(await funcx(["endpoints", "--json"], env));
      assert.deepEqual(
        (eps["endpoints"] as Array<Record<string, unknown>>).find((e) => e["endpoint_id"] === ep),
        { endpoint_id: ep, name: "default", status: "online" },
      );
      const fns = await funcx(["functions", "--json"], env);
      assert.equal(fns.code, 0, fns.stderr);
      const names = (json(fns)["functions"] as Array<Record<string, unknown>>).map((f) =>
        f["name"]
      );
      assert.ok(names.includes("add") && names.includes("explode"), String(names));
      for (const f of json(fns)["functions"] as Array<Record<string, unknown>>) {
        assert.match(String(f["function_id"]), UUID);
        assert.ok(Date.parse(String(f["created_at"])) > 0);
      }
      assert.equal((await funcx(["functions", "--limit", "0"], env)).code, 64);
    });

    await t.step(
      "exit codes: bad usage 64, unreachable service 69, refused credentials 77",
      async () => {
        const badJson = await funcx(["run", "-e", ep, `${file}#add`, "one", "--json"], env);
        assert.equal(badJson.code, 64);
        assert.equal((json(badJson)["error"] as Record<string, unknown>)["code"], "usage");
        assert.match(badJson.stderr, /Argument 1 \("one"\) is not JSON/);
        const unknownOption = await funcx(["status", "g", "--frobnicate"], env);
        assert.equal(unknownOption.code, 64);
        assert.match(unknownOption.stderr, /unknown option '--frobnicate'/);
        assert.equal((await funcx(["submit", "-e", ep, "--shell", "true"], env)).code, 64);
        const missing = await funcx(["run", "-e", ep, `${file}#nope`], env);
        assert.equal(missing.code, 66);
        assert.match(
          missing.stderr,
          /has no exported function "nope" \(its functions: add, explode/,
        );

        const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const address = `http://127.0.0.1:${(closed.addr as Deno.NetAddr).port}`;
        closed.close();
        const down = await funcx(["endpoints", "--json"], {
          ...env,
          FUNCX_SERVICE_ADDRESS: address,
        });
        assert.equal(down.code, 69, down.stderr);
        assert.equal((json(down)["error"] as Record<string, unknown>)["exit_code"], 69);
        assert.ok(down.stderr.includes(address), down.stderr);

        const refused = await funcx(["endpoints"], { ...env, FUNCX_SDK_CLIENT_SECRET: "wrong" });
        assert.equal(refused.code, 77, refused.stderr);
        const none = await funcx(["endpoints", "--json"], {
          ...env,
          FUNCX_SDK_CLIENT_ID: "",
          FUNCX_SDK_CLIENT_SECRET: "",
        });
        assert.equal(none.code, 77, none.stderr);
        assert.equal((json(none)["error"] as Record<string, unknown>)["code"], "not_logged_in");
      },
    );

    await t.step("login: client credentials from the environment, or the device flow", async () => {
      const creds = json(await funcx(["login", "--json"], env));
      assert.equal(creds["source"], "client_credentials");
      assert.equal(creds["user"], "dev");
      assert.equal(creds["service"], stack.service.address);

      await addUser(stack.service.dbPath, "erin", "erin's password");
      const noClient = { ...env, FUNCX_SDK_CLIENT_ID: "", FUNCX_SDK_CLIENT_SECRET: "" };
      const child = new Deno.Command(Deno.execPath(), {
        args: denoRunArgs("cli/funcx.ts", ["login", "--json"]),
        env: noClient,
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let stderr = "";
      const errDone = (async () => {
        for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
          stderr += chunk;
          const code = /approve code (\S+)/.exec(stderr)?.[1];
          if (code) {
            const res = await fetch(`${stack.service.address}/login`, {
              method: "POST",
              body: new URLSearchParams({
                user_code: code,
                username: "erin",
                password: "erin's password",
                decision: "approve",
              }),
            });
            await res.body?.cancel();
            stderr = "";
          }
        }
      })();
      let stdout = "";
      for (;;) {
        const { value, done } = await out.read();
        if (done) break;
        stdout += value;
      }
      await errDone;
      assert.equal((await child.status).code, 0, stderr);
      const me = JSON.parse(stdout);
      assert.equal(me["user"], "erin");
      assert.equal(me["source"], "device_flow");
      // The stored login serves the next commands.
      const eps = await funcx(["endpoints", "--json"], noClient);
      assert.equal(eps.code, 0, eps.stderr);
      assert.deepEqual(json(eps), { endpoints: [] });
      const logout = await funcx(["logout", "--json"], noClient);
      assert.deepEqual(json(logout), { service: stack.service.address, logged_out: true });
      assert.equal((await funcx(["endpoints"], noClient)).code, 77);
    });

    await t.step("funcx-service: version and user list --json", async () => {
      const v = JSON.parse(await runDeno("cli/funcx_service.ts", ["version", "--json"]));
      const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
      assert.equal(v.version, config.version);
      assert.match(v.api_version, /^\d+\.\d+\.\d+$/);
      const users = JSON.parse(
        await runDeno("cli/funcx_service.ts", [
          "user",
          "list",
          "--json",
          "--database",
          stack.service.dbPath,
        ]),
      );
      const names = (users.users as Array<{ id: string; name: string }>).map((u) => u.name);
      assert.ok(names.includes("dev") && names.includes("erin"), String(names));
    });

    await t.step("the README's crontab lines under cron's minimal environment", async () => {
      const readme = await Deno.readTextFile(join(ROOT, "README.md"));
      const block = /```crontab\n([\s\S]*?)```/.exec(readme)?.[1];
      assert.ok(block, "README.md has a ```crontab block");
      const lines = block.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
      assert.equal(lines.length, 2, block);
      // What the env file the lines source holds: the README names each variable.
      const envFile = /```sh\n(# ~\/\.funcx\/cron\.env[\s\S]*?)```/.exec(readme)?.[1];
      assert.ok(envFile, "README.md shows ~/.funcx/cron.env");
      for (const name of ["FUNCX_SERVICE_ADDRESS", "FUNCX_SDK_CLIENT_ID", "FUNCX_ENDPOINT_ID"]) {
        assert.match(envFile, new RegExp(`export ${name}=`));
      }
      const cronHome = join(dir, "cron-home");
      await Deno.mkdir(join(cronHome, ".funcx"), { recursive: true });
      await Deno.mkdir(join(cronHome, "bin"));
      // The binary's stand-in: this Deno running the entry point (deno compile cannot run here).
      await Deno.writeTextFile(
        join(cronHome, "bin", "funcx"),
        `#!/bin/sh\nDENO_DIR='${denoDir}' exec ${
          [Deno.execPath(), ...denoRunArgs("cli/funcx.ts", [])].map((a) => `'${a}'`).join(" ")
        } "$@"\n`,
        { mode: 0o755 },
      );
      await Deno.writeTextFile(
        join(cronHome, ".funcx", "cron.env"),
        [
          'export PATH="$HOME/bin:$PATH"',
          `export FUNCX_SERVICE_ADDRESS=${stack.service.address}`,
          `export FUNCX_SDK_CLIENT_ID=${stack.service.clientId}`,
          `export FUNCX_SDK_CLIENT_SECRET=${stack.service.clientSecret}`,
          `export FUNCX_ENDPOINT_ID=${ep}`,
        ].join("\n") + "\n",
        { mode: 0o600 },
      );
      /** Runs a crontab line's command as cron does: `\%` is `%`, in /bin/sh, in a bare env. */
      const cron = async (line: string) => {
        const command = line.trim().split(/\s+/).slice(5).join(" ");
        assert.doesNotMatch(command.replaceAll("\\%", ""), /%/, "an unescaped % in a crontab line");
        const r = await new Deno.Command("env", {
          args: [
            "-i",
            "PATH=/usr/bin:/bin",
            `HOME=${cronHome}`,
            "SHELL=/bin/sh",
            "LOGNAME=cron",
            "/bin/sh",
            "-c",
            command.replaceAll("\\%", "%"),
          ],
          stdin: "null",
        }).output();
        return {
          code: r.code,
          output: new TextDecoder().decode(r.stderr) + new TextDecoder().decode(r.stdout),
        };
      };
      const [submit, collect] = lines;
      const first = await cron(submit!);
      assert.equal(first.code, 0, first.output);
      const second = await cron(submit!);
      assert.equal(second.code, 0, second.output);
      const log = await Deno.readTextFile(join(cronHome, "funcx-cron.log"));
      const submitted = log.split("\n").filter((l) => UUID.test(l));
      assert.equal(submitted.length, 2, log);
      const later = await cron(collect!);
      assert.equal(later.code, 0, later.output);
      const collected = (await Deno.readTextFile(join(cronHome, "funcx-results.jsonl")))
        .trim().split("\n").map((l) => JSON.parse(l));
      assert.equal(collected.length, 1);
      const doc = collected[0] as { complete: boolean; results: Array<Record<string, unknown>> };
      assert.equal(doc.complete, true);
      assert.deepEqual(doc.results.map((x) => x["task_id"]).sort(), submitted.sort());
      for (const x of doc.results) {
        assert.equal(x["status"], "success");
        assert.equal((x["result"] as { returncode: number }).returncode, 0);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
