/**
 * The limits of sending tasks ahead to busy workers (see `worker_pool.ts`), shared by the pool
 * and the engine's config.
 *
 * @module
 */

/**
 * Tasks are sent ahead only to a worker whose last task ran under this many milliseconds, and
 * taken back when the one it runs passes it.
 */
export const AHEAD_MAX_RUN_MS = 10;

/** Most tasks a busy worker is sent beyond the one it runs (`engine.worker_send_ahead`). */
export const SEND_AHEAD = 10;
