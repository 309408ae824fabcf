import { constants as fsConstants, type Stats } from "node:fs";
import { chmod, chown, lchown, link, lstat, lutimes, mkdir, open, readlink, rm, symlink, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Header } from "tar-stream";
import { ancestors, parentOf, splitLayerPath } from "./paths.ts";

/** Owner and times (seconds, possibly fractional) of a tar entry. */
export interface EntryMeta {
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
}

type DirMeta = EntryMeta & { mode: number };

/**
 * Writes tar entries below a directory, refusing any that would leave it: names are
 * relative without '..', nothing is written through a symbolic link made by an earlier
 * entry, files are opened O_EXCL|O_NOFOLLOW. Subclasses say how errors read, make device
 * nodes and fifos, and may hook the steps below. Owners are restored only when running as root.
 */
export abstract class TarEntryWriter {
  /** Relative paths known to be real directories (not symlinks) made or checked by this writer. */
  protected readonly dirs = new Set<string>([""]);
  /** Metadata of directory entries, applied by finish() (writing children changes mtimes). */
  protected readonly dirMeta = new Map<string, DirMeta>();
  protected readonly asRoot: boolean = process.getuid?.() === 0;

  constructor(protected readonly destination: string) {}

  /** An entry that would write outside the destination. */
  protected abstract unsafe(entry: string, reason: string): Error;
  /** An entry that cannot be applied (malformed, unsupported). */
  protected abstract bad(entry: string, reason: string): Error;
  /** Creates a device node or fifo entry. */
  protected abstract special(name: string, path: string, header: Header, meta: EntryMeta): Promise<void>;

  /** Why a hard link whose target is not a relative path inside the root is refused. */
  protected abstract linkOutsideReason(linkname: string, unsafe: string): string;
  /** Why a hard link whose target's parent `dir` is a symbolic link is refused. */
  protected abstract linkThroughSymlinkReason(linkname: string, dir: string): string;
  /** Why a hard link to a missing target is refused. */
  protected abstract missingLinkTargetReason(linkname: string): string;
  /** Why an entry whose parent `dir` is a symbolic link (to `target`) is refused. */
  protected abstract parentSymlinkReason(dir: string, target: string): string;

  protected abs(path: string): string {
    return path === "" ? this.destination : join(this.destination, path);
  }

  /** The relative path an entry name stands for ("" for the root); refuses absolute and '..' names. */
  protected entryPath(name: string): string {
    const split = splitLayerPath(name);
    if ("unsafe" in split) throw this.unsafe(name, split.unsafe);
    return split.parts.join("/");
  }

  /** Writes an entry at `path` (not the root) according to its type. */
  protected async write(name: string, path: string, header: Header, meta: EntryMeta, body: AsyncIterable<Buffer>): Promise<void> {
    switch (header.type) {
      case "file":
      case "contiguous-file":
        return this.file(name, path, header.mode, meta, body);
      case "directory":
        return this.directory(name, path, { mode: header.mode, ...meta });
      case "symlink":
        return this.symlink(name, path, header.linkname ?? "", meta);
      case "link":
        return this.hardLink(name, path, header.linkname ?? "");
      case "character-device":
      case "block-device":
      case "fifo":
        return this.special(name, path, header, meta);
      default:
        throw this.bad(name, `unsupported tar entry type ${JSON.stringify(header.type)}`);
    }
  }

  private async file(name: string, path: string, mode: number, meta: EntryMeta, body: AsyncIterable<Buffer>): Promise<void> {
    await this.prepare(name, path, false);
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
    const handle = await open(this.abs(path), flags, 0o600);
    try {
      for await (const chunk of body) {
        let offset = 0;
        while (offset < chunk.length) offset += (await handle.write(chunk, offset)).bytesWritten;
      }
      if (this.asRoot) await handle.chown(meta.uid, meta.gid);
      await handle.chmod(mode & 0o7777);
      await handle.utimes(meta.atime, meta.mtime);
    } finally {
      await handle.close();
    }
  }

  private async directory(name: string, path: string, meta: DirMeta): Promise<void> {
    const kept = await this.prepare(name, path, true);
    if (!kept) await mkdir(this.abs(path), { mode: 0o700 });
    this.dirs.add(path);
    this.dirMeta.set(path, meta);
  }

  private async symlink(name: string, path: string, target: string, meta: EntryMeta): Promise<void> {
    if (target === "") throw this.bad(name, "symbolic link without a target");
    this.checkSymlinkTarget(name, path, target);
    await this.prepare(name, path, false);
    const abs = this.abs(path);
    await symlink(target, abs);
    if (this.asRoot) await lchown(abs, meta.uid, meta.gid);
    await lutimes(abs, meta.atime, meta.mtime);
  }

  /** Refuses a symbolic link by its target; by default any target is allowed (it is never followed here). */
  protected checkSymlinkTarget(_name: string, _path: string, _target: string): void {}

  private async hardLink(name: string, path: string, linkname: string): Promise<void> {
    const split = splitLayerPath(linkname);
    if ("unsafe" in split) throw this.unsafe(name, this.linkOutsideReason(linkname, split.unsafe));
    const target = split.parts.join("/");
    if (target === "") throw this.bad(name, "hard link without a target");
    for (const dir of ancestors(target)) {
      if (this.dirs.has(dir)) continue;
      const stat = await lstatOrNull(this.abs(dir));
      if (stat?.isSymbolicLink()) throw this.unsafe(name, this.linkThroughSymlinkReason(linkname, dir));
      if (!stat?.isDirectory()) break; // the lstat of the target below reports it missing
    }
    await this.materialize(target);
    const stat = await lstatOrNull(this.abs(target));
    if (stat === null) throw this.bad(name, this.missingLinkTargetReason(linkname));
    if (stat.isDirectory()) throw this.bad(name, `hard link target ${JSON.stringify(linkname)} is a directory`);
    if (target === path) return;
    await this.prepare(name, path, false);
    await link(this.abs(target), this.abs(path));
  }

  /** Puts on disk an entry written at `path` but not yet created, so a hard link can find it. */
  protected async materialize(_path: string): Promise<void> {}

  /**
   * Makes sure the parents of `path` are real directories inside the destination (creating
   * missing ones), then removes whatever is at `path` unless it is a directory and `keepDir`
   * is set. Returns whether a directory was kept.
   */
  protected async prepare(name: string, path: string, keepDir: boolean): Promise<boolean> {
    await this.ensureParents(name, path);
    if (this.unqueue(path)) return false;
    const abs = this.abs(path);
    const stat = await lstatOrNull(abs);
    if (stat === null) return false;
    this.replacing(abs);
    if (stat.isDirectory()) {
      if (keepDir) return true;
      await rm(abs, { recursive: true, force: true });
      this.forget(path);
    } else {
      await unlink(abs);
    }
    return false;
  }

  /** Drops an entry queued for `path` but not yet on disk; returns whether there was one. */
  protected unqueue(_path: string): boolean {
    return false;
  }

  /** Told that what is on disk at `abs` is about to be removed (or kept, for a directory). */
  protected replacing(_abs: string): void {}

  protected async ensureParents(name: string, path: string): Promise<void> {
    if (this.dirs.has(parentOf(path))) return;
    for (const dir of ancestors(path)) {
      if (this.dirs.has(dir)) continue;
      const abs = this.abs(dir);
      const stat = await this.statParent(name, dir);
      if (stat === null) {
        await this.createParent(abs);
      } else if (stat.isSymbolicLink()) {
        const target = await readlink(abs).catch(() => "?");
        throw this.unsafe(name, this.parentSymlinkReason(dir, target));
      } else if (!stat.isDirectory()) {
        throw this.bad(name, `its parent ${JSON.stringify(dir)} is not a directory`);
      }
      this.dirs.add(dir);
    }
  }

  /** What is at the parent directory `dir` of entry `name`, null if nothing (then createParent makes it). */
  protected statParent(_name: string, dir: string): Promise<Stats | null> {
    return lstatOrNull(this.abs(dir));
  }

  /** Creates a missing parent directory that has no entry of its own. */
  protected async createParent(abs: string): Promise<void> {
    await mkdir(abs, { mode: 0o755 });
  }

  /** Drops what is known about a removed directory and everything below it. */
  protected forget(path: string): void {
    forgetBelow(this.dirs, path);
    forgetBelow(this.dirMeta, path);
  }

  /** Applies the directories' metadata; call once all entries are written. */
  async finish(): Promise<void> {
    // Deepest first, so setting a directory's mtime is not undone by its children.
    const dirs = [...this.dirMeta].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [path, meta] of dirs) {
      const abs = this.abs(path);
      if (this.asRoot) await chown(abs, meta.uid, meta.gid);
      await chmod(abs, meta.mode & 0o7777);
      await utimes(abs, meta.atime, meta.mtime);
    }
  }
}

/** Deletes the keys that are `path` or below it. */
export function forgetBelow(keyed: { keys(): Iterable<string>; delete(key: string): boolean }, path: string): void {
  const prefix = `${path}/`;
  for (const key of keyed.keys()) if (key === path || key.startsWith(prefix)) keyed.delete(key);
}

function depth(path: string): number {
  let count = 0;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) count++;
  return path === "" ? -1 : count;
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw error;
  }
}

/** Reads and discards an entry's body (the extractor waits until it is consumed). */
export async function drain(body: AsyncIterable<Buffer>): Promise<void> {
  for await (const _chunk of body) {
    // discard
  }
}
