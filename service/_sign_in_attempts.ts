/**
 * Sign-in throttling as both stores apply it: one key's `sign_in_attempts` row, and the pure
 * steps that decide, for an attempt that starts or fails, the row to write and the verdict. The
 * stores only read the rows (locked, in key order) and write what a step returns.
 *
 * @module
 */
import { num, type Row } from "./_store_rows.ts";
import type { AttemptLimit, AttemptVerdict } from "./store.ts";

/** A `sign_in_attempts` row. */
export interface AttemptRow {
  count: number;
  windowStart: number;
  lockedUntil: number;
}

/** A `sign_in_attempts` row as an {@linkcode AttemptRow}. */
export function toAttempt(row: Row): AttemptRow {
  return {
    count: num(row, "count"),
    windowStart: num(row, "window_start"),
    lockedUntil: num(row, "locked_until"),
  };
}

/** When a row can be forgotten: its window and its lock are both over. */
export function attemptExpiry(row: AttemptRow, limit: AttemptLimit): number {
  return Math.max(row.windowStart + limit.windowS, row.lockedUntil);
}

function bumped(row: AttemptRow | undefined, limit: AttemptLimit, now: number): AttemptRow {
  return !row || now - row.windowStart >= limit.windowS
    ? { count: 1, windowStart: now, lockedUntil: 0 }
    : { count: row.count + 1, windowStart: row.windowStart, lockedUntil: 0 };
}

function lockedRow(limit: AttemptLimit, now: number): AttemptRow {
  return { count: 0, windowStart: now, lockedUntil: now + limit.lockS };
}

function verdictOf(limit: AttemptLimit, row: AttemptRow | undefined, now: number): AttemptVerdict {
  if (row && row.lockedUntil > now) {
    return { key: limit.key, count: 0, lockedUntil: row.lockedUntil };
  }
  return { key: limit.key, count: row?.count ?? 0, lockedUntil: 0 };
}

/** One key's step of a sign-in attempt: the row to write (none: unchanged) and the verdict. */
export type AttemptStep = (
  row: AttemptRow | undefined,
  limit: AttemptLimit,
  now: number,
) => { row: AttemptRow | undefined; verdict: AttemptVerdict };

/**
 * {@linkcode Store.countSignIn} for one key: the row to write (none: unchanged) and the verdict.
 */
export function countAttempt(
  row: AttemptRow | undefined,
  limit: AttemptLimit,
  now: number,
): { row: AttemptRow | undefined; verdict: AttemptVerdict } {
  if ((row && row.lockedUntil > now) || !limit.countUpFront) {
    return { row: undefined, verdict: verdictOf(limit, row, now) };
  }
  let next = bumped(row, limit, now);
  if (next.count > limit.maxFailures) next = lockedRow(limit, now);
  return { row: next, verdict: verdictOf(limit, next, now) };
}

/** {@linkcode Store.failSignIn} for one key: the row to write (none: unchanged) and the verdict. */
export function failAttempt(
  row: AttemptRow | undefined,
  limit: AttemptLimit,
  now: number,
): { row: AttemptRow | undefined; verdict: AttemptVerdict } {
  if (row && row.lockedUntil > now) return { row: undefined, verdict: verdictOf(limit, row, now) };
  let next = limit.countUpFront ? (row ?? bumped(row, limit, now)) : bumped(row, limit, now);
  if (next.count >= limit.maxFailures) next = lockedRow(limit, now);
  return { row: next, verdict: verdictOf(limit, next, now) };
}

/** Limits sorted by key: every writer locks rows in the same order, so none deadlock. */
export function byKey(limits: readonly AttemptLimit[]): AttemptLimit[] {
  return [...limits].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}
