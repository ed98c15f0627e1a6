/**
 * Warm routing, the interchange's choice of a manager for each task. Starting a worker in a
 * container image costs a container start (and maybe a pull), so a task for an image goes to a
 * manager that already has a worker in it, or is about to (a task of that image is on its way
 * there), when there is one: first to a free worker there, then to a prefetch slot there, and
 * only then to another manager. Each manager says which images it has ready workers in (the
 * `warm` frame); the interchange adds the images of the tasks it handed out. Plain tasks keep
 * away from managers with container workers while another has room. Among equals, managers take
 * turns (round robin), as they do when no container is in use.
 *
 * @module
 */

/** The container images a manager has workers in, or will have for tasks sent to it. */
export class WarmKinds {
  #reported = new Set<string>();
  readonly #sent = new Map<string, number>();

  /** The images the manager said it has ready workers in (its latest `warm` frame). */
  report(kinds: readonly string[]): void {
    this.#reported = new Set(kinds);
  }

  /** A task for `kind` was sent to the manager. */
  sent(kind: string): void {
    this.#sent.set(kind, (this.#sent.get(kind) ?? 0) + 1);
  }

  /** A task for `kind` sent to the manager finished (or came back). */
  done(kind: string): void {
    const n = (this.#sent.get(kind) ?? 0) - 1;
    if (n > 0) this.#sent.set(kind, n);
    else this.#sent.delete(kind);
  }

  /** Whether the manager has, or is about to have, a worker in `kind`. */
  has(kind: string): boolean {
    return this.#reported.has(kind) || this.#sent.has(kind);
  }

  /** Whether the manager has no container worker, and none on its way. */
  get empty(): boolean {
    return this.#reported.size === 0 && this.#sent.size === 0;
  }
}

/** What the picker needs to know of a manager. */
export interface RoutedManager {
  /** Its workers. */
  readonly capacity: number;
  /** The tasks it holds. */
  readonly inflight: { readonly size: number };
  /** Tasks its busy workers can take beyond their current one. @default 0 */
  readonly ahead?: number;
  /** The images it has workers in. */
  readonly kinds: WarmKinds;
}

/** {@linkcode ManagerPicker.pick}'s answer that the task should wait for a warm manager's slot. */
export const HOLD = "hold";

/**
 * Picks managers for the tasks of one dispatch round, in turns starting with the first of
 * `order`.
 *
 * @example
 * ```ts
 * import { ManagerPicker, WarmKinds } from "./warm_routing.ts";
 * const cold = { capacity: 1, inflight: new Set<string>(), kinds: new WarmKinds() };
 * const warm = { capacity: 1, inflight: new Set<string>(), kinds: new WarmKinds() };
 * warm.kinds.report(["img:1"]);
 * const picker = new ManagerPicker([cold, warm]);
 * if (picker.pick("img:1", 0, true) !== warm) throw new Error("not warm");
 * if (picker.pick(undefined, 0, true) !== cold) throw new Error("plain went to the warm one");
 * ```
 */
export class ManagerPicker<M extends RoutedManager> {
  readonly #order: readonly M[];
  #cursor = 0;
  #anyWarm: boolean;

  /** A picker over the ready managers `order`. */
  constructor(order: readonly M[]) {
    this.#order = order;
    this.#anyWarm = order.some((m) => !m.kinds.empty);
  }

  /**
   * The manager for a task in container image `kind` (undefined: a plain task) that has room
   * for it with `extra` tasks beyond its workers (and its `ahead` slots too, `withAhead`);
   * {@linkcode HOLD} when `holdForWarm` and only managers without a worker in the image have room
   * (the task should wait for a prefetch slot of a warm one); undefined when no manager has room.
   */
  pick(
    kind: string | undefined,
    extra: number,
    holdForWarm: boolean,
    withAhead = false,
  ): M | typeof HOLD | undefined {
    const n = this.#order.length;
    let fallback = -1;
    let warmExists = false;
    for (let i = 0; i < n; i++) {
      const at = (this.#cursor + i) % n;
      const m = this.#order[at]!;
      const room = m.inflight.size < m.capacity + extra + (withAhead ? m.ahead ?? 0 : 0);
      if (kind === undefined) {
        if (!room) continue;
        if (!this.#anyWarm || m.kinds.empty) return this.#take(at);
        if (fallback < 0) fallback = at;
      } else if (m.kinds.has(kind)) {
        warmExists = true;
        if (room) return this.#take(at);
      } else if (room && fallback < 0) {
        fallback = at;
      }
    }
    if (fallback < 0) return undefined;
    if (kind !== undefined && warmExists && holdForWarm) return HOLD;
    if (kind !== undefined) this.#anyWarm = true;
    return this.#take(fallback);
  }

  #take(at: number): M {
    this.#cursor = (at + 1) % this.#order.length;
    return this.#order[at]!;
  }
}
