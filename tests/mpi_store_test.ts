/**
 * Both stores keep an MPI task's resource specification (a nullable column), and a database
 * made before that column existed gets it when a store opens it.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import postgres from "postgres";
import { testDatabase } from "./harness/postgres.ts";
import { openStore } from "../service/open_store.ts";
import { schema } from "../service/_store_schema.ts";
import type { Store } from "../service/store.ts";

/** The tables as they were before `tasks.resource_specification`. */
const OLD_SCHEMA = schema("REAL").replace(", resource_specification TEXT)", ")");

async function roundTrip(store: Store): Promise<void> {
  const spec = { num_nodes: 2, ranks_per_node: 2, num_ranks: 3 };
  const [mpi, plain] = [crypto.randomUUID(), crypto.randomUUID()];
  const ok = await store.addTasks("u1", crypto.randomUUID(), [
    { id: mpi, functionId: "f", endpointId: "e", resourceSpecification: spec },
    { id: plain, functionId: "f", endpointId: "e" },
  ]);
  assert.notEqual(ok, false);
  assert.deepEqual((await store.getTask(mpi))?.resourceSpecification, spec);
  assert.equal((await store.getTask(plain))?.resourceSpecification, null);
}

Deno.test("stores: resource_specification is kept; an older SQLite database gets the column", async () => {
  assert.notEqual(OLD_SCHEMA, schema("REAL"), "the old schema differs from the new one");
  const dir = await Deno.makeTempDir({ prefix: "funcx-mpi-store-" });
  const path = join(dir, "old.db");
  const old = new DatabaseSync(path);
  old.exec(OLD_SCHEMA);
  old.close();
  const store = await openStore(path, { taskTtlS: 3600 });
  try {
    await roundTrip(store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stores: resource_specification is kept; an older PostgreSQL database gets the column", async () => {
  await using db = await testDatabase();
  const sql = postgres(db.url, { onnotice: () => {} });
  await sql.unsafe(
    schema("DOUBLE PRECISION", "BYTEA").replace(", resource_specification TEXT)", ")"),
  )
    .simple();
  await sql.end();
  const store = await openStore(db.url, { taskTtlS: 3600 });
  try {
    await roundTrip(store);
  } finally {
    await store.close();
  }
});
