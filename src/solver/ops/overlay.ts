import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import type { LayerInfo } from "../store/index.ts";
import { isProcessAlive } from "../store/process-liveness.ts";
import { runCommand as run } from "./command.ts";
import { UserError } from "../../user-error.ts";

/**
 * overlayfs mounts of layer stacks. Layer directories are given relative to
 * the snapshots directory (the mount runs there) so that many layers fit in
 * the kernel's one-page limit for mount options.
 */

export interface OverlayRequest {
  /** Bottom to top. */
  lower: readonly LayerInfo[];
  /** Absent: a read-only overlay. */
  upperDir?: string;
  workDir?: string;
  target: string;
  /** An empty directory to stand in for missing lower layers. */
  emptyDir: string;
}

export async function mountOverlay(request: OverlayRequest): Promise<void> {
  await mkdir(request.target, { recursive: true });
  await mkdir(request.emptyDir, { recursive: true });
  if (request.upperDir) await mkdir(request.upperDir, { recursive: true });
  if (request.workDir) await mkdir(request.workDir, { recursive: true });
  for (const layer of request.lower) await markOpaqueDirs(layer);

  const base = request.lower[0] ? dirname(dirname(request.lower[0].dir)) : request.emptyDir;
  const lowerDirs = [...request.lower].reverse().map((layer) => relative(base, layer.dir));
  // overlayfs needs one lower directory with an upper one, two without.
  const minimum = request.upperDir ? 1 : 2;
  while (lowerDirs.length < minimum) lowerDirs.push(request.emptyDir);
  const options = [`lowerdir=${lowerDirs.join(":")}`];
  if (request.upperDir && request.workDir) options.push(`upperdir=${request.upperDir}`, `workdir=${request.workDir}`);
  else options.push("ro");
  try {
    await run("mount", ["-t", "overlay", "overlay", "-o", options.join(","), request.target], base);
  } catch (error) {
    // Not a bug in the build: the machine cannot mount overlays (not root, no overlayfs).
    throw new UserError(`cannot mount an overlay of ${request.lower.length} layers: ${(error as Error).message}`, "tsbuild needs root and a kernel with overlayfs for RUN steps and large copies");
  }
}

export async function unmount(target: string): Promise<void> {
  try {
    await run("umount", [target]);
  } catch {
    await run("umount", ["-l", target]).catch(() => undefined);
  }
}

/**
 * Unmounts overlays left under `dir` by builds that were killed: mount points
 * under `<root>/tmp/<pid>-…` whose process is gone. Live builds keep theirs.
 */
export async function unmountStale(dir: string): Promise<void> {
  const mountInfo = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const prefix = `${dir}/`;
  const targets = mountInfo
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((target) => target.startsWith(prefix))
    .filter((target) => !isProcessAlive(Number(target.slice(prefix.length).split("-")[0])))
    .sort((a, b) => b.length - a.length);
  for (const target of targets) await unmount(target);
}

/** The kernel reads opaque directories from an xattr the layer store cannot set: set it before mounting. */
async function markOpaqueDirs(layer: LayerInfo): Promise<void> {
  for (const path of layer.opaqueDirs) {
    await run("setfattr", ["-n", "trusted.overlay.opaque", "-v", "y", join(layer.dir, path)]);
  }
}

/**
 * Read-only merged views of layer stacks, mounted on first use and all
 * unmounted by `close` (the views live as long as one op needs them).
 */
export class LayerViews {
  private readonly mounted: string[] = [];
  private readonly views = new Map<string, () => Promise<string>>();

  constructor(private readonly tempPath: (label: string) => string) {}

  /** A function that mounts `layers` once and returns the view's directory; undefined without the privilege to mount. */
  lazy(layers: readonly LayerInfo[]): (() => Promise<string>) | undefined {
    if (process.getuid?.() !== 0) return undefined;
    const key = layers.map((layer) => layer.id).join(":");
    let lazy = this.views.get(key);
    if (!lazy) {
      let view: Promise<string> | undefined;
      lazy = () => (view ??= this.mount(layers));
      this.views.set(key, lazy);
    }
    return lazy;
  }

  async close(): Promise<void> {
    for (const target of this.mounted.splice(0)) {
      await unmount(target);
      await rm(dirname(target), { recursive: true, force: true });
    }
  }

  private async mount(layers: readonly LayerInfo[]): Promise<string> {
    const work = this.tempPath("view");
    const target = join(work, "view");
    await mountOverlay({ lower: layers, target, emptyDir: join(work, "empty") });
    this.mounted.push(target);
    return target;
  }
}
