/**
 * The daemon's pid file `<endpoint dir>/daemon.pid` and the process checks around it: is the
 * recorded process alive and really a funcX endpoint (a pid can be reused after a reboot), and
 * how to stop it together with every process in its group.
 *
 * @module
 */
import { join } from "node:path";

/** What the pid file says about the endpoint's daemon. */
export type PidState =
  | { kind: "none" }
  | { kind: "running"; pid: number }
  | { kind: "stale"; pid: number | undefined };

/** Path of the pid file of an endpoint directory. */
export function pidFilePath(endpointDir: string): string {
  return join(endpointDir, "daemon.pid");
}

/** The command line of a live process, or `undefined` when it is gone or a zombie. */
export function processCmdline(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return undefined;
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
  } catch {
    return undefined;
  }
}

/** Whether `pid` is alive and runs a funcX endpoint. */
export function isEndpointProcess(pid: number): boolean {
  const cmd = processCmdline(pid);
  return cmd !== undefined && /funcx[-_]endpoint/i.test(cmd);
}

/** Reads the pid file and checks the process it names. */
export async function readPidFile(endpointDir: string): Promise<PidState> {
  let text: string;
  try {
    text = await Deno.readTextFile(pidFilePath(endpointDir));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { kind: "none" };
    throw err;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) return { kind: "stale", pid: undefined };
  return isEndpointProcess(pid) ? { kind: "running", pid } : { kind: "stale", pid };
}

/**
 * Writes this process's pid. Fails with `AlreadyExists` when a live endpoint holds the file; a
 * stale file is replaced. Returns the stale pid file's state, if any, so the caller can report it.
 */
export async function claimPidFile(endpointDir: string, pid = Deno.pid): Promise<PidState> {
  const state = await readPidFile(endpointDir);
  if (state.kind === "running" && state.pid !== pid) {
    throw new Deno.errors.AlreadyExists(
      `Endpoint is already running (pid ${state.pid}, pid file "${pidFilePath(endpointDir)}")`,
    );
  }
  await Deno.writeTextFile(pidFilePath(endpointDir), `${pid}\n`, { mode: 0o644 });
  return state;
}

/** Removes the pid file if it still names `pid`. */
export async function releasePidFile(endpointDir: string, pid = Deno.pid): Promise<void> {
  try {
    const text = await Deno.readTextFile(pidFilePath(endpointDir));
    if (Number(text.trim()) === pid) await Deno.remove(pidFilePath(endpointDir));
  } catch {
    // Already gone.
  }
}

/** Removes the pid file whatever it says. */
export async function removePidFile(endpointDir: string): Promise<void> {
  await Deno.remove(pidFilePath(endpointDir)).catch(() => {});
}

/** Live processes (not zombies) in process group `pgid`. */
export function processGroupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z" && fields[0] !== "X" && Number(fields[2]) === pgid) {
        out.push(Number(e.name));
      }
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

function processGroupOf(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  } catch {
    return undefined;
  }
}

function signal(target: number, sig: Deno.Signal): void {
  try {
    Deno.kill(target, sig);
  } catch {
    // Gone already.
  }
}

/**
 * Stops a daemon and its children: SIGTERM to its process group (to the process alone when it
 * does not lead a group, as in foreground mode), waits up to `graceS`, then SIGKILLs survivors.
 * Resolves `true` when it had to use SIGKILL.
 */
export async function terminateProcessTree(pid: number, graceS = 10): Promise<boolean> {
  const ownGroup = processGroupOf(pid) === pid;
  const alive = () =>
    ownGroup ? processGroupMembers(pid).length > 0 : processCmdline(pid) !== undefined;
  signal(ownGroup ? -pid : pid, "SIGTERM");
  const deadline = Date.now() + graceS * 1000;
  while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (!alive()) return false;
  if (ownGroup) { for (const p of processGroupMembers(pid)) signal(p, "SIGKILL"); }
  else signal(pid, "SIGKILL");
  for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
  return true;
}
