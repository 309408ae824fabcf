import { linkSync } from "node:fs";
import { lstat, mkdir } from "node:fs/promises";
import { join, posix } from "node:path";
import pLimit from "p-limit";
import type { TreeEntry } from "./source-tree.ts";

/*
 * A copy into a layer may hard-link a file instead of writing its bytes when the file it
 * links is in another layer and already is exactly what the copy would write (content,
 * mode, owner, mtime): layers are never written once made, and whatever replaces a file
 * later (a later source of the same step, a RUN step's copy-up) unlinks it or writes
 * elsewhere, so sharing the inode is invisible.
 */

/** A layer an earlier run of the same step wrote, and the identities of the files it holds. */
export interface PreviousFiles {
  /** The layer's directory (overlay upper-dir format). */
  dir: string;
  /** The layer and those it links from: whose inodes its files may be. */
  inodesOf: string[];
  /** Layer path ("/app/src/a.ts") → identity. */
  files: ReadonlyMap<string, string>;
}

const mkdirLimit = pLimit(64);

/**
 * Everything a layer keeps of a copied context file: content, mode (the source's and the
 * one written: a symbolic --chmod maps one to the other), owner and mtime. Two copies with
 * one identity are interchangeable.
 */
export function fileIdentity(entry: TreeEntry, mode: number, owner: { uid: number; gid: number }): string | undefined {
  if (entry.type !== "file" || entry.digest === undefined || entry.mtimeMs === undefined) return undefined;
  const modes = `${(entry.mode & 0o7777).toString(8)}>${(mode & 0o7777).toString(8)}`;
  return `${entry.digest} ${modes} ${owner.uid}:${owner.gid} ${entry.mtimeMs}`;
}

/**
 * For a copy of a context directory to `layerPath`: records the identity of every file it
 * writes in `record` (and forgets paths it fills with something else), and returns the
 * files the previous run wrote identically, each with the file to link.
 */
export function unchangedFiles(options: {
  children: readonly TreeEntry[];
  layerPath: string;
  identityOf: (entry: TreeEntry) => string | undefined;
  previous: PreviousFiles | undefined;
  record: Map<string, string>;
}): Map<TreeEntry, string> {
  const { children, layerPath, previous, record } = options;
  const unchanged = new Map<TreeEntry, string>();
  for (const child of children) {
    const path = posix.join(layerPath, child.path);
    const identity = options.identityOf(child);
    // A directory or symlink replaces whatever an earlier source wrote there.
    if (identity === undefined) {
      record.delete(path);
      continue;
    }
    record.set(path, identity);
    if (previous !== undefined && previous.files.get(path) === identity) unchanged.set(child, join(previous.dir, path));
  }
  return unchanged;
}

/**
 * Creates the directories among `children` under `toDir` (which exists) and hard-links
 * each file of `sources` from the host file given. Returns the entries linked; the caller
 * copies the rest, and sets the directories' metadata afterwards (a link changes its
 * directory's mtime). Links nothing if a directory's place is taken by something else.
 */
export async function linkFiles(children: readonly TreeEntry[], toDir: string, sources: ReadonlyMap<TreeEntry, string>): Promise<Set<TreeEntry>> {
  const linked = new Set<TreeEntry>();
  if (sources.size === 0 || !(await makeDirectories(children, toDir))) return linked;
  // Synchronous: a link is a few microseconds of kernel work, a promise through libuv's
  // thread pool many times that. The event loop gets a turn every few hundred links.
  let count = 0;
  for (const [child, source] of sources) {
    try {
      linkSync(source, join(toDir, child.path));
      linked.add(child);
    } catch {
      // Gone (pruned meanwhile), not ours to link, or in the way: the caller copies it instead.
    }
    if (++count % 256 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return linked;
}

/**
 * Creates the directories among `children` (parents listed before children), shallowest
 * first, each level at once. False if a path is taken by something that is not a directory.
 */
async function makeDirectories(children: readonly TreeEntry[], toDir: string): Promise<boolean> {
  const byDepth = new Map<number, string[]>();
  for (const child of children) {
    if (child.type !== "dir") continue;
    const depth = child.path.split("/").length;
    const level = byDepth.get(depth);
    if (level) level.push(child.path);
    else byDepth.set(depth, [child.path]);
  }
  for (const depth of [...byDepth.keys()].sort((a, b) => a - b)) {
    const made = await Promise.all((byDepth.get(depth) ?? []).map((path) => mkdirLimit(() => makeDirectory(join(toDir, path)))));
    if (!made.every(Boolean)) return false;
  }
  return true;
}

async function makeDirectory(path: string): Promise<boolean> {
  try {
    await mkdir(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return (await lstat(path)).isDirectory();
  }
}
