/**
 * Giving memory back once a burst of work is over, in the daemon, the manager and each worker.
 *
 * After thousands of tasks a Deno process keeps what the burst made it grow: V8 keeps its grown
 * heap (its own memory reducer shrinks it only after ~10 s of quiet), and glibc's malloc keeps the
 * freed native memory (socket and compiler buffers) in its arenas. Measured on the benchmark, the
 * daemon's live heap after 20,000 tasks is the same as when fresh, yet its RSS stayed ~2.5× as
 * large. So when activity stops for a moment an {@linkcode IdleReclaimer} runs a full garbage
 * collection (which shrinks V8's heap) and `malloc_trim(0)` (which hands malloc's free pages back),
 * once per quiet period, and only if the process has grown since the last time.
 *
 * Both steps are best effort: the collection uses `--expose-gc` set at run time through `node:v8`
 * (so neither the command line nor a `deno compile`d binary needs a flag), and the trim needs
 * glibc and the `ffi` permission; where either is missing that step is skipped.
 *
 * @module
 */
import { libcSymbols } from "./_libc.ts";

type Trim = (pad: bigint) => number;
type Gc = (options?: { type: string; execution: string; flavor: string }) => void;

let gcFn: Gc | null | undefined;
let trimFn: Trim | null | undefined;

async function loadGc(): Promise<Gc | null> {
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === "function") return own as Gc;
  try {
    // Loaded on first use: importing them costs a few MiB in a process that never needs them.
    const [{ default: v8 }, { default: vm }] = await Promise.all([
      import("node:v8"),
      import("node:vm"),
    ]);
    v8.setFlagsFromString("--expose-gc");
    // A new context gets the `gc` function now that the flag is set; keep that one.
    const fn = vm.runInNewContext("gc");
    return typeof fn === "function" ? fn as Gc : null;
  } catch {
    return null;
  }
}

function loadTrim(): Trim | null {
  const libc = libcSymbols({ malloc_trim: { parameters: ["usize"], result: "i32" } });
  return libc && ((pad) => libc.malloc_trim(pad));
}

/**
 * Runs a full garbage collection, then returns malloc's free memory to the system; best effort.
 * Resolves with what it could do.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { reclaimMemory } from "./idle_reclaimer.ts";
 * const { gc } = await reclaimMemory();
 * assert.ok(gc);
 * ```
 */
export async function reclaimMemory(): Promise<{ gc: boolean; trim: boolean }> {
  if (gcFn === undefined) gcFn = await loadGc();
  if (trimFn === undefined) trimFn = loadTrim();
  // "last-resort": collect until nothing more goes, and release the freed pages (a plain full
  // collection keeps the grown heap).
  gcFn?.({ type: "major", execution: "sync", flavor: "last-resort" });
  trimFn?.(0n);
  return { gc: gcFn !== null, trim: trimFn !== null };
}

/** Options of {@linkcode IdleReclaimer}. */
export interface IdleReclaimerOptions {
  /** Milliseconds without activity that count as the end of a burst. @default 500 */
  quietMs?: number;
  /** Growth of the RSS since the last reclaim (bytes) below which nothing is done. @default 8 MiB */
  minGrowthBytes?: number;
  /**
   * The RSS that growth is measured from until the first reclaim; 0 makes the first quiet
   * period always reclaim (start-up leaves garbage too). @default the RSS at construction
   */
  baselineBytes?: number;
  /**
   * Whether the process is in the middle of work (a task running): no reclaim then, however
   * long it has been since the last touch. @default never busy
   */
  busy?: () => boolean;
  /**
   * Up to this many milliseconds are added, at random, to each quiet period, so that many
   * processes going quiet together do not all reclaim at once. @default 0
   */
  jitterMs?: number;
  /** What reclaims (tests). @default {@linkcode reclaimMemory} */
  reclaim?: () => Promise<unknown>;
  /** The process's resident memory in bytes (tests). @default `Deno.memoryUsage().rss` */
  rss?: () => number;
}

/**
 * Calls {@linkcode reclaimMemory} once activity stops: {@linkcode IdleReclaimer.touch} on each
 * message is all a hot path pays (a clock read); one unref'd timer runs only while a quiet period
 * is awaited, so an idle process is never woken.
 *
 * @example
 * ```ts
 * import { IdleReclaimer } from "./idle_reclaimer.ts";
 * const reclaimer = new IdleReclaimer({ quietMs: 10, minGrowthBytes: 0 });
 * reclaimer.touch();
 * reclaimer.close();
 * ```
 */
export class IdleReclaimer {
  readonly #quietMs: number;
  readonly #minGrowth: number;
  readonly #reclaim: () => Promise<unknown>;
  readonly #rss: () => number;
  readonly #busy: () => boolean;
  readonly #jitterMs: number;
  #last = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #baseline: number;
  #running = false;
  #closed = false;

  /** A reclaimer; nothing happens until the first {@linkcode IdleReclaimer.touch}. */
  constructor(options: IdleReclaimerOptions = {}) {
    this.#quietMs = options.quietMs ?? 500;
    this.#minGrowth = options.minGrowthBytes ?? 8 * 1024 * 1024;
    this.#reclaim = options.reclaim ?? reclaimMemory;
    this.#rss = options.rss ?? (() => Deno.memoryUsage().rss);
    this.#busy = options.busy ?? (() => false);
    this.#jitterMs = options.jitterMs ?? 0;
    this.#baseline = options.baselineBytes ?? this.#rss();
  }

  /** Whether a quiet period is being waited for (a timer is armed). */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  /** Records activity: a reclaim waits until `quietMs` pass without another touch. */
  touch(): void {
    this.#last = performance.now();
    if (this.#timer === undefined && !this.#closed) this.#arm(this.#quiet());
  }

  #quiet(): number {
    return this.#quietMs + Math.floor(Math.random() * this.#jitterMs);
  }

  #arm(ms: number): void {
    const timer = setTimeout(() => this.#onTimer(), ms);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #onTimer(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    const quiet = performance.now() - this.#last;
    if (quiet < this.#quietMs) return this.#arm(Math.ceil(this.#quietMs - quiet));
    if (this.#busy()) return this.#arm(this.#quiet());
    if (this.#running || this.#rss() - this.#baseline < this.#minGrowth) return;
    this.#running = true;
    this.#reclaim().catch(() => {}).finally(() => {
      this.#running = false;
      this.#baseline = this.#rss();
    });
  }

  /** Stops the timer; idempotent. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
