/**
 * The self-diagnostic's checks of this host: disk space for the result journal, and the commands
 * the config's provider, MPI mode and container runtime run.
 *
 * @module
 */
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { type CheckResult, message } from "./_diagnostic_check.ts";
import type { EndpointConfig } from "./config.ts";

/** Free space where the result journal lives (`<endpoint dir>/result_journal`). */
export async function checkDisk(endpointDir: string, minFreeMiB: number): Promise<CheckResult> {
  const journal = join(endpointDir, "result_journal");
  let where = journal;
  let fs;
  try {
    fs = await statfs(journal);
  } catch {
    where = endpointDir;
    try {
      fs = await statfs(endpointDir);
    } catch (err) {
      return {
        check: "disk",
        status: "fail",
        detail: `Cannot read the free space of "${endpointDir}": ${message(err)}`,
        fix: "Check that the endpoint's directory exists and is readable",
      };
    }
  }
  const freeMiB = Math.floor((Number(fs.bavail) * Number(fs.bsize)) / 2 ** 20);
  if (freeMiB >= minFreeMiB) {
    return {
      check: "disk",
      status: "pass",
      detail: `${freeMiB} MiB free for the result journal in "${where}" (at least ${minFreeMiB})`,
    };
  }
  return {
    check: "disk",
    status: "fail",
    detail: `Only ${freeMiB} MiB free for the result journal in "${where}" (need ${minFreeMiB}): ` +
      "results waiting for the broker are kept there",
    fix: "Free space on that file system, or move the endpoint's directory " +
      "(funcx-endpoint -c <dir> / FUNCX_CONFIG_DIR) to a file system with room",
  };
}

/** The programs the config makes the endpoint run, each with why. */
export function requiredCommands(config: EndpointConfig): Array<{ program: string; why: string }> {
  const e = config.engine;
  const out: Array<{ program: string; why: string }> = [];
  const provider = e.provider.type;
  if (provider === "slurm") {
    for (const p of ["sbatch", "squeue", "scancel"]) {
      out.push({ program: p, why: "engine.provider.type: slurm" });
    }
    if (e.provider.launcher === "srun") {
      out.push({ program: "srun", why: "provider.launcher: srun" });
    }
  } else if (provider === "gridengine") {
    for (const p of ["qsub", "qstat", "qdel"]) {
      out.push({ program: p, why: "engine.provider.type: gridengine" });
    }
    if (e.provider.launcher === "qrsh") {
      out.push({ program: "qrsh", why: "provider.launcher: qrsh" });
    }
  }
  if (e.mpi) out.push({ program: e.mpi.launcher, why: `engine.mpi.launcher: ${e.mpi.launcher}` });
  if (e.container_type && e.container_type !== "custom") {
    out.push({ program: e.container_type, why: `engine.container_type: ${e.container_type}` });
  } else if (e.container_type === "custom" && e.container_launch_cmd) {
    const first = e.container_launch_cmd.trim().split(/\s+/)[0];
    if (first && !first.includes("{")) {
      out.push({ program: first, why: "engine.container_launch_cmd" });
    }
  }
  return out;
}

async function findProgram(program: string, path: string): Promise<string | undefined> {
  const dirs = program.includes("/") ? [""] : path.split(":").filter((d) => d !== "");
  for (const d of dirs) {
    const file = d ? join(d, program) : program;
    try {
      const st = await Deno.stat(file);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Each program of {@linkcode requiredCommands} on `path`. */
export async function checkCommands(config: EndpointConfig, path: string): Promise<CheckResult> {
  const needed = requiredCommands(config);
  if (needed.length === 0) {
    return {
      check: "commands",
      status: "skip",
      detail: "The config runs no outside commands (local provider, no MPI, no containers)",
    };
  }
  const missing: string[] = [];
  const found: string[] = [];
  for (const n of needed) {
    const at = await findProgram(n.program, path);
    if (at) found.push(at);
    else missing.push(`${n.program} (for ${n.why})`);
  }
  if (missing.length === 0) {
    return { check: "commands", status: "pass", detail: `Found ${found.join(", ")}` };
  }
  return {
    check: "commands",
    status: "fail",
    detail: `Not on PATH: ${missing.join(", ")}`,
    fix: "Load the scheduler's, MPI's or container runtime's environment before starting the " +
      "endpoint (e.g. `module load slurm`, or add its bin directory to PATH), or install it; " +
      "or change the config so it does not need it",
  };
}
