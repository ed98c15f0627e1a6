/**
 * The tasks a worker pool holds: each with the transitions recorded so far, waiting in
 * a FIFO per kind of worker (plain, or one container image) until a worker of that kind is idle.
 *
 * @module
 */
import type { TaskTransition } from "../../sdk/protocol/mod.ts";

/** A task in the pool, with the transitions recorded so far. */
export interface PoolTask {
  /** The task's id. */
  task_id: string;
  /** The task buffer. */
  buffer: string;
  /** Transitions recorded before the pool (interchange); the pool adds `running`. */
  statuses: TaskTransition[];
  /** The container image it runs in; absent for a plain worker. */
  container?: string | undefined;
}

/** A FIFO of tasks of one kind (plain, or one container image). */
export class TaskQueue {
  items: PoolTask[] = [];
  head = 0;

  /** Tasks waiting. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Adds a task at the end. */
  push(t: PoolTask): void {
    this.items.push(t);
  }

  /**
   * Puts back a task taken back from a worker that had not started it: before the first
   * waiting task that came after it (`order` numbers tasks by arrival), so that tasks taken
   * back one by one keep their order.
   */
  putBack(t: PoolTask, order: (t: PoolTask) => number): void {
    const at = order(t);
    let i = this.head;
    while (i < this.items.length && order(this.items[i]!) < at) i++;
    if (i === this.head && this.head > 0) this.items[--this.head] = t;
    else this.items.splice(i, 0, t);
  }

  /** Takes the oldest task, if any. */
  shift(): PoolTask | undefined {
    if (this.head >= this.items.length) return undefined;
    const t = this.items[this.head++]!;
    if (this.head === this.items.length) {
      // Drained: drop the handed-out tasks the array still points to.
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return t;
  }

  /** Takes the task `taskId` out of the queue, if it waits there. */
  remove(taskId: string): PoolTask | undefined {
    for (let i = this.head; i < this.items.length; i++) {
      const t = this.items[i]!;
      if (t.task_id !== taskId) continue;
      this.items.splice(i, 1);
      return t;
    }
    return undefined;
  }
}
