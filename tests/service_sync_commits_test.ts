/**
 * `funcx-service serve --sync-commits`: an SQLite store that syncs every commit to disk before it
 * returns (`synchronous = FULL`), so that a machine that loses power loses no accepted task;
 * without it commits are synced by the checkpoint thread, within a second.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SqliteStore } from "../service/sqlite_store.ts";
import { clientOf, createVhost, deleteVhost, sharedBroker, startService } from "./harness/stack.ts";

Deno.test("SqliteStore: syncCommits syncs every commit, and by default the checkpoints do", async () => {
  const dir = await Deno.makeTempDir({ prefix: "funcx-sync-" });
  try {
    for (const syncCommits of [true, false, undefined]) {
      const store = SqliteStore.open(join(dir, `${syncCommits}.db`), {
        taskTtlS: 60,
        ...(syncCommits === undefined ? {} : { syncCommits }),
      });
      try {
        assert.equal(store.syncsCommits, syncCommits === true, `syncCommits ${syncCommits}`);
        assert.equal(store.checkpointsInThread, true);
      } finally {
        await store.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("funcx-service serve --sync-commits: the service's store syncs each commit, and works", async () => {
  const access = await sharedBroker();
  const vhost = `sync-${crypto.randomUUID().slice(0, 8)}`;
  const amqpUrl = await createVhost(access, vhost);
  const dir = await Deno.makeTempDir({ prefix: "funcx-sync-serve-" });
  try {
    const service = await startService({ dir, amqpUrl, broker: access, args: ["--sync-commits"] });
    try {
      const client = clientOf(service);
      const id = await client.registerFunction(function triple(x: number) {
        return 3 * x;
      });
      assert.equal((await client.getFunctions()).some((f) => f.function_uuid === id), true);
      const log = await Deno.readTextFile(join(dir, "service.log"));
      assert.match(log, /every commit is synced to disk before it is answered/);
    } finally {
      await service.process.stop();
    }
    // Without the flag the service says nothing of it.
    await Deno.mkdir(join(dir, "plain"));
    const plain = await startService({ dir: join(dir, "plain"), amqpUrl, broker: access });
    await plain.process.stop();
    assert.doesNotMatch(
      await Deno.readTextFile(join(dir, "plain", "service.log")),
      /every commit is synced/,
    );
  } finally {
    await deleteVhost(access, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
