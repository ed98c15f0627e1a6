/**
 * Opens the PostgreSQL store's connection pool and makes its tables, with a bounded wait: the
 * first step of `PostgresStore.open`, where a database that cannot be used shows itself.
 *
 * @module
 */
import postgres from "postgres";
import { addedColumnsSql, schema } from "./_store_schema.ts";

/** How to connect. */
export interface PostgresConnectOptions {
  /** Most connections in the pool. */
  maxConnections: number;
  /** Seconds to wait for a connection. */
  connectTimeoutS: number;
}

/** Any advisory lock id works, as long as every replica uses the same one. */
const SCHEMA_LOCK = 0x66756e63;

/**
 * Connects to `url` and creates the tables that are missing; throws (the pool closed) when no
 * connection is made within `connectTimeoutS` or the schema cannot be made.
 */
export async function connectPostgres(
  url: string,
  options: PostgresConnectOptions,
): Promise<postgres.Sql> {
  const sql = postgres(url, {
    max: options.maxConnections,
    connect_timeout: options.connectTimeoutS,
    idle_timeout: 60,
    // CREATE ... IF NOT EXISTS notices would go to stdout.
    onnotice: () => {},
    connection: { application_name: "funcx-service" },
  });
  // Replicas starting together would race on the catalog; the lock serializes them.
  const init = sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK}::bigint)`;
    await tx.unsafe(schema("DOUBLE PRECISION", "BYTEA")).simple();
    await tx.unsafe(addedColumnsSql()).simple();
  });
  // The client's own connect_timeout does not end a first connection to a host that never
  // answers (it retries), so the wait is bounded here.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${options.connectTimeoutS} s`)),
      options.connectTimeoutS * 1000,
    );
  });
  try {
    await Promise.race([init, timeout]);
  } catch (err) {
    init.catch(() => {});
    await sql.end({ timeout: 0 }).catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return sql;
}
