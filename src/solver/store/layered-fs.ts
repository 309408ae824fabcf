import type { Stats } from "node:fs";
import { lstat as hostLstat, readFile as hostReadFile, readdir as hostReaddir, readlink as hostReadlink } from "node:fs/promises";
import { join } from "node:path";
import { errnoCode } from "./errors.ts";
import { isWhiteout } from "./whiteout.ts";

/** One layer of the stack: its directory (overlayfs upper-dir format) and its opaque directories ("/a/b"). */
export interface LayerView {
  dir: string;
  opaqueDirs: readonly string[];
}

export interface EntryStat {
  type: "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";
  /** Permission bits, including setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  /** For symlinks. */
  linkTarget?: string;
  /** For character and block devices. */
  rdev?: number;
}

/** Errors of image paths, with the errno-style codes a file system would give. */
export class LayeredFsError extends Error {
  override readonly name = "LayeredFsError";
  constructor(
    readonly code: "ENOENT" | "ENOTDIR" | "EISDIR" | "EINVAL" | "ELOOP",
    readonly path: string,
    message: string,
  ) {
    super(`${message}: ${path}`);
  }
}

/** Linux gives up after 40 links; images may chain more, so allow as many as BuildKit does. */
const MAX_SYMLINKS = 255;

/** A merged directory: the layers (indexes, top first) whose copy of it shows through. */
interface MergedDir {
  layers: number[];
  stats: Stats | undefined;
}

/** The entry that shows at a path: the topmost layer's, unless a whiteout hid it. */
interface Entry {
  hostPath: string;
  stats: Stats;
}

interface StackLayer {
  dir: string;
  opaque: ReadonlySet<string>;
}

/**
 * A read-only merged view of a stack of layers, with overlayfs semantics: an upper
 * entry hides the lower ones, a whiteout (char device 0:0) hides the path, an opaque
 * directory hides the lower contents of that directory, and a non-directory hides a
 * lower directory. Paths are absolute inside the image. Layers never change, so
 * directory lookups are cached for the life of the object.
 *
 * Symlinks are followed like the kernel would inside a chroot: `lstat`, `readlink`
 * and `hostPath` follow the parent components but not the last one; `readFile` and
 * `readdir` follow all of them. `resolve` does the following, and never leaves "/".
 */
export class LayeredFS {
  /** Top layer first. */
  private readonly stack: StackLayer[];
  private readonly dirs = new Map<string, Promise<MergedDir | undefined>>();

  /** `layers` bottom to top, as in an image manifest. */
  constructor(layers: readonly LayerView[]) {
    this.stack = [...layers].reverse().map((layer) => ({ dir: layer.dir, opaque: new Set(layer.opaqueDirs.map(normalizePath)) }));
  }

  async lstat(path: string): Promise<EntryStat | undefined> {
    const resolved = await this.resolve(path, { followFinal: false });
    if (resolved === "/") return this.rootStat();
    const entry = await this.entry(resolved);
    return entry === undefined ? undefined : toEntryStat(entry.stats, entry.hostPath);
  }

  async readdir(path: string): Promise<string[]> {
    const resolved = await this.resolve(path);
    const dir = await this.mergedDir(resolved);
    if (dir === undefined) {
      const exists = resolved === "/" || (await this.entry(resolved)) !== undefined;
      throw new LayeredFsError(exists ? "ENOTDIR" : "ENOENT", path, exists ? "not a directory" : "no such directory");
    }
    const seen = new Set<string>();
    const names: string[] = [];
    for (const index of dir.layers) {
      const hostDir = this.hostPathIn(index, resolved);
      let entries;
      try {
        entries = await hostReaddir(hostDir, { withFileTypes: true });
      } catch (error) {
        if (isMissing(error)) continue;
        throw error;
      }
      for (const dirent of entries) {
        if (seen.has(dirent.name)) continue;
        seen.add(dirent.name);
        if (dirent.isCharacterDevice() && isWhiteout(await hostLstat(join(hostDir, dirent.name)))) continue;
        names.push(dirent.name);
      }
    }
    return names.sort();
  }

  async readlink(path: string): Promise<string> {
    const entry = await this.entry(await this.resolve(path, { followFinal: false }));
    if (entry === undefined) throw new LayeredFsError("ENOENT", path, "no such file or directory");
    if (!entry.stats.isSymbolicLink()) throw new LayeredFsError("EINVAL", path, "not a symbolic link");
    return hostReadlink(entry.hostPath);
  }

  async readFile(path: string): Promise<Buffer> {
    const resolved = await this.resolve(path);
    const entry = resolved === "/" ? undefined : await this.entry(resolved);
    if (resolved === "/" || entry?.stats.isDirectory()) throw new LayeredFsError("EISDIR", path, "is a directory");
    if (entry === undefined) throw new LayeredFsError("ENOENT", path, "no such file");
    if (!entry.stats.isFile()) throw new LayeredFsError("EINVAL", path, "not a regular file");
    return hostReadFile(entry.hostPath);
  }

  /** The file in a layer that backs a non-directory entry (to copy or stream it); undefined for directories and missing paths. */
  async hostPath(path: string): Promise<string | undefined> {
    const entry = await this.entry(await this.resolve(path, { followFinal: false }));
    return entry === undefined || entry.stats.isDirectory() ? undefined : entry.hostPath;
  }

  /**
   * The file in a layer that backs the regular file at `path` taken as written (a symlink
   * among its parents means there is none): to link a file found by walking directories.
   */
  async regularFileAt(path: string): Promise<{ hostPath: string; dev: number; ino: number } | undefined> {
    const entry = await this.entry(normalizePath(path));
    return entry?.stats.isFile() ? { hostPath: entry.hostPath, dev: entry.stats.dev, ino: entry.stats.ino } : undefined;
  }

  /**
   * Resolves symlinks in every component, inside the image: ".." stops at "/", and an
   * absolute target starts again from "/". Components after a missing one are kept as
   * written. More than 255 links → ELOOP.
   */
  async resolve(path: string, options: { followFinal?: boolean } = {}): Promise<string> {
    // A trailing "/" or "/." names the directory a final symlink points to, as in POSIX.
    const followFinal = (options.followFinal ?? true) || /(^|\/)\.?$/.test(path);
    let pending = components(path);
    const resolved: string[] = [];
    let links = 0;
    for (let name = pending.shift(); name !== undefined; name = pending.shift()) {
      if (name === "..") {
        resolved.pop();
        continue;
      }
      if (pending.length === 0 && !followFinal) {
        resolved.push(name);
        break;
      }
      const candidate = `/${[...resolved, name].join("/")}`;
      const entry = await this.entry(candidate);
      if (entry?.stats.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) throw new LayeredFsError("ELOOP", path, `more than ${MAX_SYMLINKS} symbolic links`);
        const target = await hostReadlink(entry.hostPath);
        if (target.startsWith("/")) resolved.length = 0;
        pending = [...components(target), ...pending];
        continue;
      }
      resolved.push(name);
    }
    return `/${resolved.join("/")}`;
  }

  private hostPathIn(layerIndex: number, imagePath: string): string {
    return join(this.stackLayer(layerIndex).dir, imagePath);
  }

  private stackLayer(index: number): StackLayer {
    const layer = this.stack[index];
    if (layer === undefined) throw new RangeError(`no layer ${index}`);
    return layer;
  }

  private async rootStat(): Promise<EntryStat> {
    const root = await this.mergedDir("/");
    if (root?.stats === undefined) return { type: "dir", mode: 0o755, uid: 0, gid: 0, size: 0, mtimeMs: 0 };
    return toEntryStat(root.stats, this.stackLayer(0).dir);
  }

  /** The entry at a normalized path whose parents are real directories (no symlinks followed). */
  private async entry(path: string): Promise<Entry | undefined> {
    const slash = path.lastIndexOf("/");
    const parent = await this.mergedDir(slash === 0 ? "/" : path.slice(0, slash));
    if (parent === undefined) return undefined;
    for (const index of parent.layers) {
      const hostPath = this.hostPathIn(index, path);
      const stats = await lstatIfExists(hostPath);
      if (stats === undefined) continue;
      return isWhiteout(stats) ? undefined : { hostPath, stats };
    }
    return undefined;
  }

  private mergedDir(path: string): Promise<MergedDir | undefined> {
    let found = this.dirs.get(path);
    if (found === undefined) {
      found = this.computeMergedDir(path);
      this.dirs.set(path, found);
      found.catch(() => this.dirs.delete(path));
    }
    return found;
  }

  private async computeMergedDir(path: string): Promise<MergedDir | undefined> {
    let candidates: number[];
    if (path === "/") {
      candidates = this.stack.map((_, index) => index);
    } else {
      const slash = path.lastIndexOf("/");
      const parent = await this.mergedDir(slash === 0 ? "/" : path.slice(0, slash));
      if (parent === undefined) return undefined;
      candidates = parent.layers;
    }
    const layers: number[] = [];
    let stats: Stats | undefined;
    for (const index of candidates) {
      const found = await lstatIfExists(this.hostPathIn(index, path));
      if (found === undefined) continue;
      // A whiteout or a non-directory hides the path in every layer below (and if it is the topmost entry, there is no directory).
      if (!found.isDirectory()) break;
      stats ??= found;
      layers.push(index);
      if (this.stackLayer(index).opaque.has(path)) break;
    }
    if (path === "/") return { layers, stats };
    return layers.length === 0 ? undefined : { layers, stats };
  }
}

function toEntryStat(stats: Stats, hostPath: string): Promise<EntryStat> | EntryStat {
  const base = { mode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid, size: stats.size, mtimeMs: stats.mtimeMs };
  if (stats.isFile()) return { type: "file", ...base };
  if (stats.isDirectory()) return { type: "dir", ...base };
  if (stats.isSymbolicLink()) return hostReadlink(hostPath).then((linkTarget) => ({ type: "symlink", ...base, linkTarget }));
  if (stats.isCharacterDevice()) return { type: "char", ...base, rdev: stats.rdev };
  if (stats.isBlockDevice()) return { type: "block", ...base, rdev: stats.rdev };
  if (stats.isFIFO()) return { type: "fifo", ...base };
  return { type: "socket", ...base };
}

/** "/a//b/./c/" → ["a", "b", "c"]; ".." is kept (resolution gives it meaning). */
function components(path: string): string[] {
  return path.split("/").filter((part) => part !== "" && part !== ".");
}

function normalizePath(path: string): string {
  const parts: string[] = [];
  for (const part of components(path)) {
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

async function lstatIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await hostLstat(path);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

function isMissing(error: unknown): boolean {
  const code = errnoCode(error);
  return code === "ENOENT" || code === "ENOTDIR";
}
