/**
 * Container images for the podman tests, built on this machine with no registry: a root
 * filesystem holding this Deno executable, the libraries `ldd` lists for it and a marker file
 * only the image has (`/etc/funcx-image-marker`), imported with `podman import` under a name
 * unique to the test run (`localhost/funcx-test-<pid>-<random>:1`) and removed at teardown.
 * Images whose making process is gone (a run that was killed) are removed by
 * {@linkcode removeLeftoverImages}, as the site harness does with its accounts.
 *
 * A worker in such an image is this project's `worker_main.ts` under `deno run`: the project and
 * the Deno cache are bind-mounted read-only at their own paths ({@linkcode workerInImage}), since
 * the compiled `funcx-endpoint __worker` cannot be built here. Needs root (podman rootful, as CI
 * runs it).
 *
 * @module
 */
import { dirname, join } from "node:path";
import { alive, output } from "./_os.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Where the marker file is in a test image. */
export const IMAGE_MARKER = "/etc/funcx-image-marker";

/** Prefix of every test image's name; the making process's pid follows. */
const PREFIX = "localhost/funcx-test-";

function podman(args: string[]): Promise<string> {
  return output("podman", args);
}

/** Removes test images (and their containers) whose making process is gone; returns their names. */
export async function removeLeftoverImages(): Promise<string[]> {
  const names = (await podman(["images", "--format", "{{.Repository}}:{{.Tag}}"])).split("\n");
  const dead = names.filter((name) => {
    const pid = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1];
    return pid !== undefined && !alive(Number(pid));
  });
  if (dead.length > 0) await podman(["rmi", "--force", ...dead]);
  return dead;
}

/** The files a dynamically linked executable needs: itself and what `ldd` lists. */
async function filesOf(executable: string): Promise<string[]> {
  const out = await new Deno.Command("ldd", { args: [executable], stdout: "piped" }).output();
  const libs = [...new TextDecoder().decode(out.stdout).matchAll(/(\/\S+) \(0x[0-9a-f]+\)/g)]
    .map((m) => m[1]!);
  return [executable, ...libs];
}

/** A test image; dispose to remove it (and any container still using it). */
export interface TestImage extends AsyncDisposable {
  /** Its name, for `podman run` and for a registered container's location. */
  name: string;
  /** The content of {@linkcode IMAGE_MARKER} in it. */
  marker: string;
  /** A name of the same run's family that no image has (for "image not found"). */
  missingName: string;
}

/**
 * Builds a test image from a root filesystem: `/bin/deno`, its libraries at their own paths, a
 * writable `/tmp` and the marker file. Takes a few seconds (the Deno executable is ~100 MB).
 */
export async function buildTestImage(): Promise<TestImage> {
  await removeLeftoverImages();
  const tag = crypto.randomUUID().slice(0, 8);
  const name = `${PREFIX}${Deno.pid}-${tag}:1`;
  const marker = `funcx test image ${tag}`;
  const dir = await Deno.makeTempDir({ prefix: "funcx-image-" });
  try {
    const rootfs = join(dir, "rootfs");
    for (const d of ["bin", "etc", "tmp"]) await Deno.mkdir(join(rootfs, d), { recursive: true });
    await Deno.chmod(join(rootfs, "tmp"), 0o1777);
    const [deno, ...libs] = await filesOf(Deno.execPath());
    await Deno.copyFile(deno!, join(rootfs, "bin", "deno"));
    for (const lib of libs) {
      await Deno.mkdir(join(rootfs, dirname(lib)), { recursive: true });
      await Deno.copyFile(lib, join(rootfs, lib));
    }
    await Deno.writeTextFile(join(rootfs, IMAGE_MARKER), marker);
    const tar = join(dir, "rootfs.tar");
    const out = await new Deno.Command("tar", { args: ["-C", rootfs, "-cf", tar, "."] }).output();
    if (!out.success) throw new Error(`tar of the test image's rootfs failed (${out.code})`);
    await podman(["import", tar, name]);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return {
    name,
    marker,
    missingName: `${PREFIX}${Deno.pid}-${tag}-missing:1`,
    async [Symbol.asyncDispose]() {
      await podman(["rmi", "--force", name]).catch(() => {});
    },
  };
}

let denoDir: Promise<string> | undefined;

/** This Deno's cache folder (`deno info --json`). */
function cacheDir(): Promise<string> {
  denoDir ??= (async () => {
    const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
    return (JSON.parse(new TextDecoder().decode(out.stdout)) as { denoDir: string }).denoDir;
  })();
  return denoDir;
}

/**
 * How a worker starts in a test image: `mounts` are `podman run` options (the project and the
 * Deno cache read-only at their own paths, `DENO_DIR` set) to add to `container_cmd_options`,
 * `command` is `container_worker_cmd`.
 */
export async function workerInImage(): Promise<{ mounts: string; command: string }> {
  const cache = await cacheDir();
  return {
    mounts: `-v ${ROOT}:${ROOT}:ro -v ${cache}:${cache}:ro -e DENO_DIR=${cache}`,
    command:
      `deno run --quiet -A --config=${ROOT}/deno.json ${ROOT}/endpoint/engine/worker_main.ts`,
  };
}

/** Ids of the containers of `image` started since `since` (podman's event log). */
export async function containerStarts(image: string, since: Date): Promise<string[]> {
  const out = await podman([
    "events",
    "--stream=false",
    "--since",
    since.toISOString(),
    "--filter",
    "event=start",
    "--format",
    "{{.ID}} {{.Image}}",
  ]);
  return out.split("\n").flatMap((line) => {
    const [id, name] = line.trim().split(" ");
    return id && name === image ? [id] : [];
  });
}
