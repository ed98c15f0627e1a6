/**
 * The ground of the SQL the SQLite and PostgreSQL stores share: the placeholder values, and the
 * two ways a store runs a statement, on which `_sql_accounts.ts`, `_sql_tasks.ts` and
 * `_sql_store.ts` build, one layer each.
 *
 * @module
 */
import type { Row } from "./_store_rows.ts";
import type { ResultBatch } from "./store.ts";

/** A value bound to a `?` placeholder. */
export type Param = string | number | null;

/** Seconds an endpoint's online periods are kept after they end. */
export const UPTIME_KEPT_S = 7 * 86400;

/** How a store runs one statement, which each store supplies; the shared SQL is built on it. */
export abstract class SqlBase {
  /** The rows of one statement written with `?` placeholders. */
  protected abstract all(sql: string, params?: readonly Param[]): Promise<Row[]>;
  /** Runs one statement written with `?` placeholders; how many rows it changed. */
  protected abstract run(sql: string, params?: readonly Param[]): Promise<number>;
  /** Writes a result batch in one transaction; returns how many tasks it completed. */
  abstract applyResults(batch: ResultBatch): Promise<number>;

  /** The first row of one statement written with `?` placeholders. */
  protected async firstRow(sql: string, params?: readonly Param[]): Promise<Row | undefined> {
    return (await this.all(sql, params))[0];
  }
}
