import { linkSync, lstatSync, readdirSync } from "node:fs";
import { chmod, lchown, lstat, mkdir, utimes } from "node:fs/promises";
import { join, posix } from "node:path";
import pLimit from "p-limit";
import type { LayerInfo } from "../store/index.ts";
import type { LayerFile, TreeEntry } from "./source-tree.ts";

/*
 * A copy into a layer may hard-link a file instead of writing its bytes when the file it
 * links is in another layer and already is exactly what the copy would write (content,
 * mode, owner, mtime): layers are never written once made, and whatever replaces a file
 * later (a later source of the same step, a RUN step's copy-up) unlinks it or writes
 * elsewhere, so sharing the inode is invisible.
 */

/**
 * The layer an earlier run of the same step wrote, with the identities it recorded per
 * path. A record is only a claim: a file is linked only if it is still a regular file at
 * that path, below real directories (a later source of that run may have put a symlink to
 * the host's /etc where a directory was; following it would link a host file).
 */
export class PreviousFiles {
  /** Layer directory path → whether it and its parents are real directories. */
  private readonly realDirectories = new Map<string, boolean>();

  constructor(
    /** The layer's directory (overlay upper-dir format). */
    readonly dir: string,
    /** The layer and those it links from: whose inodes its files may be. */
    readonly inodesOf: readonly string[],
    /** Layer path ("/app/src/a.ts") → identity. */
    private readonly files: ReadonlyMap<string, string>,
  ) {}

  /** The file to link for layer path `path` if this layer holds it with `identity`. */
  fileFor(path: string, identity: string): string | undefined {
    if (this.files.get(path) !== identity || !this.isRealDirectory(posix.dirname(path))) return undefined;
    const file = join(this.dir, path);
    return lstatSync(file, { throwIfNoEntry: false })?.isFile() ? file : undefined;
  }

  private isRealDirectory(path: string): boolean {
    if (path === "/") return true;
    let real = this.realDirectories.get(path);
    if (real === undefined) {
      real = this.isRealDirectory(posix.dirname(path)) && lstatSync(join(this.dir, path), { throwIfNoEntry: false })?.isDirectory() === true;
      this.realDirectories.set(path, real);
    }
    return real;
  }
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
    const file = previous?.fileFor(path, identity);
    if (file !== undefined) unchanged.set(child, file);
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
 * Keeps an image from showing one inode at two paths (a RUN step would see a link count of
 * 2, a local export would make a hard link): of the files a copy could link from other
 * stages' layers, only those whose inode neither the base nor the new layer shows yet.
 */
export class InodeGuard {
  private readonly baseIds: Set<string>;
  /** Inodes of linked files, per base layer that links from other layers (walked on first need). */
  private readonly linkedByLayer = new Map<string, Set<string>>();
  private readonly linkedHere = new Set<string>();

  constructor(private readonly base: readonly LayerInfo[]) {
    this.baseIds = new Set(base.map((layer) => layer.id));
  }

  linkable(files: ReadonlyMap<TreeEntry, LayerFile>): Map<TreeEntry, LayerFile> {
    const sources = new Set([...files.values()].flatMap((file) => file.inodesOf));
    // A base layer shows its files' inodes; one that links from a source layer may show some of that layer's.
    const shown = this.base.filter((layer) => layer.linkedFrom.some((id) => sources.has(id))).map((layer) => this.linkedInodes(layer));
    const linkable = new Map<TreeEntry, LayerFile>();
    for (const [entry, file] of files) {
      if (file.inodesOf.some((id) => this.baseIds.has(id))) continue;
      if (this.linkedHere.has(file.inode) || shown.some((inodes) => inodes.has(file.inode))) continue;
      linkable.set(entry, file);
    }
    return linkable;
  }

  /** Call for each file linked, so that no later source of the same layer links it again. */
  linked(file: LayerFile): void {
    this.linkedHere.add(file.inode);
  }

  private linkedInodes(layer: LayerInfo): Set<string> {
    let inodes = this.linkedByLayer.get(layer.id);
    if (inodes === undefined) {
      inodes = new Set();
      const pending = [layer.dir];
      for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
        for (const entry of readdirSync(dir, { withFileTypes: true })) {
          const path = join(dir, entry.name);
          if (entry.isDirectory()) pending.push(path);
          else if (entry.isFile()) {
            const stats = lstatSync(path);
            if (stats.nlink > 1) inodes.add(`${stats.dev}:${stats.ino}`);
          }
        }
      }
      this.linkedByLayer.set(layer.id, inodes);
    }
    return inodes;
  }
}

/**
 * Gives the directories (which exist under `toDir`) their entries' owner, mode and mtime, as
 * extracting them with tar would: whole seconds. Call it once nothing more is linked into them.
 */
export async function setDirectoryMetadata(directories: readonly TreeEntry[], toDir: string): Promise<void> {
  await Promise.all(
    directories.map((directory) =>
      mkdirLimit(async () => {
        const path = join(toDir, directory.path);
        // Owners are restored only as root (as tar does).
        if (process.getuid?.() === 0) await lchown(path, directory.uid, directory.gid);
        await chmod(path, directory.mode & 0o7777);
        if (directory.mtimeMs !== undefined) {
          const seconds = Math.floor(directory.mtimeMs / 1000);
          await utimes(path, seconds, seconds);
        }
      }),
    ),
  );
}

/**
 * Creates the directories among `children` (parents listed before children), shallowest
 * first, each level at once. False if a path is taken by something that is not a directory.
 */
export async function makeDirectories(children: readonly TreeEntry[], toDir: string): Promise<boolean> {
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
