import { constants as fsConstants, type Stats } from "node:fs";
import { chmod, chown, copyFile, lchown, link, lstat, lutimes, mkdir, readdir, readlink, rm, symlink, unlink, utimes } from "node:fs/promises";
import pLimit from "p-limit";
import { join } from "node:path";
import type { LayerSource } from "./layer-blob.ts";
import { makeSpecialNodes, type SpecialNode } from "./mknod.ts";
import { normalizeOpaqueDir } from "./paths.ts";
import { deviceNumbers, inodeKey, walkLayer, type LayerDirEntry } from "./walk.ts";

export interface ExportLocalOptions {
  /** Give files the uid/gid they have in the image (needs root). Default: they belong to the exporting user, as with BuildKit's local exporter. */
  preserveOwnership?: boolean;
}

interface Meta {
  abs: string;
  stat: Stats;
}

/**
 * `-o type=local,dest=DIR`: copies the merged filesystem of the layers (bottom first) into
 * `dest`, whiteouts and opaque directories applied. Walks the layers top down, so a file
 * hidden by an upper layer is never copied. Files are reflinked where the filesystem can.
 * What `dest` already holds is kept unless the image has something at the same path
 * (which replaces it; an existing symlink is replaced, never followed). Modes and mtimes
 * are kept; device nodes are only made when running as root; sockets are skipped.
 */
export async function exportLocal(layers: readonly LayerSource[], dest: string, options: ExportLocalOptions = {}): Promise<void> {
  const isRoot = process.getuid?.() === 0;
  const chownTo = options.preserveOwnership === true;
  await mkdir(dest, { recursive: true });
  // Into an empty directory nothing can be in the way: skip the per-file checks.
  const destWasEmpty = (await readdir(dest)).length === 0;
  const copies: (() => Promise<void>)[] = [];

  /** Paths a layer above made final (a file, symlink, whiteout...): lower layers' entries there, and below, are hidden. */
  const hidden = new Set<string>();
  /** Directories made opaque by a layer above: lower layers' children of them are hidden. */
  const opaqueAbove = new Set<string>();
  /** Directories already created in dest by a layer above. */
  const madeDirs = new Set<string>();
  const dirMeta: Meta[] = [];
  const nodes: (SpecialNode & { stat: Stats })[] = [];

  for (let index = layers.length - 1; index >= 0; index--) {
    const layer = layers[index] as LayerSource;
    const opaque = new Set(layer.opaqueDirs.map(normalizeOpaqueDir));
    if (opaqueAbove.has("")) break; // an upper layer replaced the whole root
    const newHidden: string[] = [];
    /** dev:ino → dest path of its first copy, to keep hard links of this layer linked. */
    const firstCopies = new Map<string, string>();
    /** [first copy, later path]: linked once the copies are done. */
    const laterLinks: [string, string][] = [];

    await walkLayer(layer.dir, async (entry: LayerDirEntry) => {
      const { path, stat } = entry;
      if (hidden.has(path)) return false;
      const target = join(dest, path);
      if (entry.kind === "dir") {
        if (!madeDirs.has(path)) {
          await replaceWithDir(target);
          madeDirs.add(path);
          dirMeta.push({ abs: target, stat });
        }
        // An opaque directory of this layer hides the layers below, not this one.
        return !opaqueAbove.has(path);
      }
      newHidden.push(path);
      if (madeDirs.has(path) || entry.kind === "whiteout" || entry.kind === "socket") return;
      if (!destWasEmpty) await removeExisting(target);
      // A link count above 1 may be a file shared with another layer, or one linked within this layer.
      if (entry.kind === "file" && stat.nlink > 1) {
        const key = await inodeKey(entry);
        const first = firstCopies.get(key);
        if (first !== undefined) {
          laterLinks.push([first, target]);
          return;
        }
        firstCopies.set(key, target);
      }
      switch (entry.kind) {
        case "file":
          // Each path is written once (upper layers first), so copies can run side by side;
          // copyFile gives the copy the source's mode.
          copies.push(() => copyOne(entry.abs, target, stat, chownTo));
          return;
        case "symlink":
          copies.push(async () => {
            await symlink(await readlink(entry.abs), target);
            if (chownTo) await lchown(target, stat.uid, stat.gid);
            await lutimes(target, stat.atime, stat.mtime);
          });
          return;
        case "fifo":
        case "char":
        case "block": {
          if (entry.kind !== "fifo" && !isRoot) return;
          const { major, minor } = deviceNumbers(stat.rdev);
          const type = entry.kind === "fifo" ? "p" : entry.kind === "char" ? "c" : "b";
          nodes.push({ path: target, type, mode: stat.mode, major, minor, stat });
          return;
        }
      }
    });
    await Promise.all(copies.splice(0).map((copy) => copyLimit(copy)));
    for (const [first, target] of laterLinks) await link(first, target);
    for (const path of newHidden) hidden.add(path);
    for (const dir of opaque) opaqueAbove.add(dir);
  }

  await makeSpecialNodes(nodes);
  for (const node of nodes) {
    if (chownTo) await lchown(node.path, node.stat.uid, node.stat.gid);
    await lutimes(node.path, node.stat.atime, node.stat.mtime);
  }
  // Deepest first (created parents before children, so reversed), once every child is in place.
  for (const { abs, stat } of dirMeta.sort((a, b) => b.abs.length - a.abs.length)) {
    if (chownTo) await chown(abs, stat.uid, stat.gid);
    await chmod(abs, stat.mode & 0o7777);
    await utimes(abs, stat.atime, stat.mtime);
  }
}

async function copyOne(source: string, target: string, stat: Stats, chownTo: boolean): Promise<void> {
  await copyFile(source, target, fsConstants.COPYFILE_FICLONE);
  if (chownTo) await chown(target, stat.uid, stat.gid);
  // Writing the content clears setuid/setgid (and chown does too): set them again.
  if ((stat.mode & 0o6000) !== 0) await chmod(target, stat.mode & 0o7777);
  await utimes(target, stat.atime, stat.mtime);
}

/** Copies are bound by per-file system calls: keep many in flight. */
const copyLimit = pLimit(32);

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** Makes `path` a directory: keeps an existing one, replaces anything else (a symlink is removed, not followed). */
async function replaceWithDir(path: string): Promise<void> {
  const existing = await lstatOrNull(path);
  if (existing?.isDirectory()) return;
  if (existing) await unlink(path);
  await mkdir(path, { mode: 0o700 });
}

async function removeExisting(path: string): Promise<void> {
  const existing = await lstatOrNull(path);
  if (existing === null) return;
  if (existing.isDirectory()) await rm(path, { recursive: true, force: true });
  else await unlink(path);
}
