/**
 * The Debian packages the test suite runs against, in one table: the test command
 * (`scripts/run_tests.ts`) and `.ci/run` both install what is missing from it before any test
 * starts, so a fresh machine needs nothing but Node/npm and root. Without root the command stops
 * at once and names the packages to install.
 *
 * Run directly (`deno run -A tests/harness/test_packages.ts`) it installs what is missing and exits.
 *
 * @module
 */
import { aptInstall, isFile, missingPrograms } from "./_os.ts";

/** A Debian package and the file that shows it is installed. */
export interface TestPackage {
  /** The Debian package name. */
  name: string;
  /** What the suite uses it for. */
  purpose: string;
  /** Whether it is installed. */
  present: () => Promise<boolean>;
}

async function anyFile(...paths: string[]): Promise<boolean> {
  for (const p of paths) if (await isFile(p)) return true;
  return false;
}

async function onPath(program: string): Promise<boolean> {
  return (await missingPrograms([program])).length === 0;
}

async function postgresPresent(): Promise<boolean> {
  const versions = await Array.fromAsync(Deno.readDir("/usr/lib/postgresql")).catch(() => []);
  return await anyFile(...versions.map((v) => `/usr/lib/postgresql/${v.name}/bin/initdb`));
}

/** Every package the suite needs. */
export const TEST_PACKAGES: readonly TestPackage[] = [
  {
    name: "rabbitmq-server",
    purpose: "the private broker of every test run",
    present: () => anyFile("/usr/lib/rabbitmq/bin/rabbitmq-server"),
  },
  {
    name: "postgresql",
    purpose: "the PostgreSQL store and service replicas",
    present: postgresPresent,
  },
  { name: "util-linux", purpose: "setsid for detached daemons", present: () => onPath("setsid") },
  {
    name: "slurmctld",
    purpose: "the private one-node Slurm cluster",
    present: () => anyFile("/usr/sbin/slurmctld"),
  },
  {
    name: "slurmd",
    purpose: "the private one-node Slurm cluster",
    present: () => anyFile("/usr/sbin/slurmd"),
  },
  { name: "slurm-client", purpose: "sbatch, squeue, scancel", present: () => onPath("sbatch") },
  { name: "munge", purpose: "Slurm's authentication", present: () => anyFile("/usr/sbin/munged") },
  {
    name: "gridengine-master",
    purpose: "the private one-node Grid Engine cell (sge_qmaster)",
    present: () => anyFile("/usr/lib/gridengine/sge_qmaster"),
  },
  {
    name: "gridengine-exec",
    purpose: "the private one-node Grid Engine cell (sge_execd)",
    present: () => anyFile("/usr/lib/gridengine/sge_execd"),
  },
  {
    name: "gridengine-client",
    purpose: "qsub, qstat, qdel, qacct, qconf",
    present: () => anyFile("/usr/lib/gridengine/qsub"),
  },
  {
    name: "openmpi-bin",
    purpose: "the MPI tests' launcher (mpiexec, mpirun)",
    present: () => anyFile("/usr/bin/ompi_info"),
  },
  {
    name: "libopenmpi-dev",
    purpose: "mpicc and mpi.h, to compile the MPI tests' program",
    present: () =>
      anyFile(
        ...["x86_64", "aarch64"].map((a) => `/usr/lib/${a}-linux-gnu/openmpi/include/mpi.h`),
      ),
  },
  { name: "podman", purpose: "containers with a real runtime", present: () => onPath("podman") },
  {
    name: "runc",
    purpose: "podman's runtime (crun cannot run under hybrid cgroups)",
    present: () => onPath("runc"),
  },
  {
    name: "chromium",
    purpose: "the dashboard's browser test (headless)",
    present: () => anyFile("/usr/bin/chromium"),
  },
  {
    name: "prometheus",
    purpose: "the metrics test's Prometheus server and promtool",
    present: () => onPath("promtool"),
  },
  {
    name: "faketime",
    purpose: "a service whose clock runs ahead, for the self-diagnostic's clock check",
    present: () =>
      anyFile(
        ...["x86_64", "aarch64"].map((a) => `/usr/lib/${a}-linux-gnu/faketime/libfaketime.so.1`),
      ),
  },
  {
    name: "systemd",
    purpose: "systemd-analyze verify, for the units of enable-on-boot",
    present: () => onPath("systemd-analyze"),
  },
];

/** The packages of `packages` that are not installed. */
export async function missingTestPackages(
  packages: readonly TestPackage[] = TEST_PACKAGES,
): Promise<TestPackage[]> {
  const missing: TestPackage[] = [];
  for (const p of packages) if (!await p.present()) missing.push(p);
  return missing;
}

/**
 * Installs the missing test packages with one apt-get run when root; otherwise throws an error
 * naming each missing package, what it is for, and the command to install them.
 */
export async function ensureTestPackages(
  packages: readonly TestPackage[] = TEST_PACKAGES,
): Promise<void> {
  const missing = await missingTestPackages(packages);
  if (missing.length === 0) return;
  const names = missing.map((p) => p.name);
  if (Deno.uid() !== 0) throw new Error(missingPackagesMessage(missing));
  console.error(`Installing ${names.join(" ")} with apt-get`);
  await aptInstall(names);
  const still = await missingTestPackages(missing);
  if (still.length > 0) {
    throw new Error(`Still missing after apt-get: ${still.map((p) => p.name).join(", ")}`);
  }
}

/** The error for a user who is not root: each missing package, its use, the command to run. */
export function missingPackagesMessage(missing: readonly TestPackage[]): string {
  const list = missing.map((p) => `  ${p.name}: ${p.purpose}`).join("\n");
  const names = missing.map((p) => p.name).join(" ");
  return `The tests need Debian packages that are not installed:\n${list}\n` +
    `Install them with "sudo apt-get install ${names}", or run the tests as root`;
}

if (import.meta.main) {
  try {
    await ensureTestPackages();
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    Deno.exit(1);
  }
}
