import assert from "node:assert/strict";
import { join } from "node:path";
import { AuditLog } from "./audit_log.ts";

Deno.test("AuditLog: appends one JSON line per record, mode 0600 even over a looser file", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "logs", "audit.log");
  await Deno.mkdir(join(dir, "logs"));
  await Deno.writeTextFile(path, '{"earlier":true}\n', { mode: 0o644 });
  await Deno.chmod(path, 0o644);
  const log = await AuditLog.open(path);
  const base = {
    endpoint_id: "e",
    task_id: "t",
    function_id: "f",
    user: "ann",
    local_user: "ann_h",
  };
  log.write({ time: new Date(0).toISOString(), event: "received", ...base });
  log.write({ time: new Date(1).toISOString(), event: "finished", ...base, outcome: "success" });
  log.close();
  log.close();
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  const lines = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  assert.deepEqual(lines[0], { earlier: true });
  assert.equal(lines[2].outcome, "success");
  await Deno.remove(dir, { recursive: true });
});
