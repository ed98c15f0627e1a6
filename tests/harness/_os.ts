/**
 * What the private-server harnesses (RabbitMQ, PostgreSQL, Slurm) and their tests share: running
 * a command (or reading its output), installing Debian packages, finding a node's processes by an environment marker,
 * signalling, free ports and random names, finding programs, and the process-tree watcher of the
 * batch-system harnesses (Slurm, Grid Engine).
 *
 * @module
 */

/** A port picked as free was bound by someone else before the server could bind it. */
export class PortTaken extends Error {
  override name = "PortTaken";
}

/** Whether `path` is a regular file. */
export async function isFile(path: string): Promise<boolean> {
  return await Deno.stat(path).then((s) => s.isFile, () => false);
}

/** Runs a command (stdout discarded, stderr shown); throws when it exits non-zero. */
export async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<void> {
  const opts = { args, env, stdin: "null", stdout: "null", stderr: "inherit" } as const;
  const { code } = await new Deno.Command(cmd, opts).output();
  if (code !== 0) throw new Error(`Command "${cmd} ${args.join(" ")}" exited with code ${code}`);
}

/**
 * Runs a command and returns its stdout; throws an error with the command line, exit code and
 * stderr when it exits non-zero.
 */
export async function output(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<string> {
  const opts = { args, env, stdin: "null", stdout: "piped", stderr: "piped" } as const;
  const out = await new Deno.Command(cmd, opts).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}): ${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}

/** Whether process `pid` exists. */
export function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Installs Debian packages with apt-get (progress on stderr). */
export async function aptInstall(packages: readonly string[]): Promise<void> {
  const apt = `apt-get update >&2 && apt-get install -y ${packages.join(" ")} >&2`;
  await run("sh", ["-c", apt], { DEBIAN_FRONTEND: "noninteractive" });
}

/**
 * Processes whose environment holds the entry `NAME=value`, wherever they moved in the process
 * tree (a server's helpers, daemons that detached).
 */
export async function markedPids(entry: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const environ = await Deno.readTextFile(`/proc/${e.name}/environ`).catch(() => "");
    if (environ.split("\0").includes(entry)) pids.push(Number(e.name));
  }
  return pids;
}

/** Sends `sig` to `pid` (a negative pid: its process group); a process already gone is fine. */
export function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** `n` distinct ports free right now: all are held open while the next is picked. */
export function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  for (const l of listeners) l.close();
  return listeners.map((l) => l.addr.port);
}

/** `length` (at most 64) random hex digits. */
export function randomHex(length: number): string {
  return `${crypto.randomUUID()}${crypto.randomUUID()}`.replaceAll("-", "").slice(0, length);
}

/** The first line a process prints (its ready line); throws if it ends before printing one. */
export async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    const nl = text.indexOf("\n");
    if (nl >= 0) return text.slice(0, nl);
  }
  throw new Error(`The process ended before printing a line (got "${text}")`);
}

/**
 * Shell lines for a harness supervisor (`bash`, with `$D` its directory, `$MARK` its
 * `NAME=value` marker and the harness's pipe on fd 3): a watcher in a session of its own that
 * waits until the pipe closes (the harness process ended, in any way), then kills the
 * descendants of every process carrying the marker (batch jobs live in sessions of their own
 * below the daemons), then the marked processes, then removes the directory.
 */
export const TREE_WATCHER: string = `setsid sh -c 'cat >/dev/null
  marked() { grep -lsxz "$MARK" /proc/[0-9]*/environ | sed "s|/proc/||; s|/environ||"; }
  tree() { ps -e -o pid=,ppid= | awk -v roots=" $* " "
    { parent[\\$1] = \\$2 }
    END { for (p in parent) { q = p; while (q in parent && q > 1) {
      if (index(roots, \\" \\" q \\" \\")) { print p; break } q = parent[q] } } }"; }
  for i in 1 2 3; do
    pids=$(tree $(marked)); [ -n "$pids" ] && kill -KILL $pids 2>/dev/null; sleep 0.1
  done
  rm -rf -- "$D"' "$0-watcher" <&3 3<&- &`;

/** The programs of `programs` found in none of `PATH`, `extraDirs` and the system bin folders. */
export async function missingPrograms(
  programs: readonly string[],
  extraDirs: readonly string[] = [],
): Promise<string[]> {
  const dirs = [
    ...(Deno.env.get("PATH") ?? "").split(":"),
    ...extraDirs,
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
  ].filter((d) => d !== "");
  const missing: string[] = [];
  for (const p of programs) {
    let found = false;
    for (const d of dirs) {
      if (await isFile(`${d}/${p}`)) {
        found = true;
        break;
      }
    }
    if (!found) missing.push(p);
  }
  return missing;
}

/** `roots` and all their descendants, children first. */
export function descendantsOf(roots: number[]): number[] {
  const parent = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      parent.set(Number(e.name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone
    }
  }
  const rootSet = new Set(roots);
  const depth = (pid: number): number => {
    let d = 0;
    for (let q: number | undefined = pid; q !== undefined && q > 1; q = parent.get(q), d++) {
      if (rootSet.has(q)) return d;
    }
    return -1;
  };
  return [...parent.keys()]
    .map((pid) => [pid, depth(pid)] as const)
    .filter(([, d]) => d >= 0)
    .sort((a, b) => b[1] - a[1])
    .map(([pid]) => pid);
}
