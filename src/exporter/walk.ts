import { lstat, open, readdir } from "node:fs/promises";
import type { Stats } from "node:fs";
import { join } from "node:path";
import { ExporterError } from "./errors.ts";
import { joinLayerPath } from "./paths.ts";

/** What a file in an overlay upper directory stands for. */
export type LayerEntryKind = "dir" | "file" | "symlink" | "whiteout" | "char" | "block" | "fifo" | "socket";

export interface LayerDirEntry {
  /** Layer-relative path ("etc/apt/sources.list"). */
  path: string;
  /** Absolute path on disk. */
  abs: string;
  stat: Stats;
  kind: LayerEntryKind;
  /** The file's content, read ahead of the visit when `readAhead` asked for it. */
  content?: Promise<Buffer>;
}

export interface WalkOptions {
  /** Which regular files to read ahead (in parallel, a few entries ahead of the visit): small ones, typically. */
  readAhead?: (entry: LayerDirEntry) => boolean;
}

/** How many entries ahead of the visit files are read: small files cost a few syscalls each, so overlap them. */
export const READ_AHEAD = 16;

/** How many lstat calls of one directory run at once. */
export const STAT_CONCURRENCY = 64;

/**
 * "dev:ino" of an entry, to find the paths of one inode. From the walk's stat when the
 * numbers are exact (a double holds integers up to 2^53), else from a bigint lstat.
 */
export async function inodeKey(entry: LayerDirEntry): Promise<string> {
  const { dev, ino } = entry.stat;
  if (Number.isSafeInteger(dev) && Number.isSafeInteger(ino)) return `${dev}:${ino}`;
  const exact = await lstat(entry.abs, { bigint: true });
  return `${exact.dev}:${exact.ino}`;
}

export function entryKind(stat: Stats): LayerEntryKind {
  if (stat.isDirectory()) return "dir";
  if (stat.isFile()) return "file";
  if (stat.isSymbolicLink()) return "symlink";
  // overlayfs marks a deleted path with a 0:0 character device.
  if (stat.isCharacterDevice()) return stat.rdev === 0 ? "whiteout" : "char";
  if (stat.isBlockDevice()) return "block";
  if (stat.isFIFO()) return "fifo";
  return "socket";
}

/**
 * Walks a layer directory depth first, a directory before its children, each directory's
 * entries in the byte order of their names in a layer tar (a whiteout sorts as `.wh.<name>`).
 * The root itself is not visited. `visit` returns false to skip a directory's children.
 */
export async function walkLayer(
  root: string,
  visit: (entry: LayerDirEntry) => Promise<boolean | void> | boolean | void,
  options: WalkOptions = {},
): Promise<void> {
  let rootStat: Stats;
  try {
    rootStat = await lstat(root);
  } catch (error) {
    throw new ExporterError("ERR_LAYER_SOURCE", `layer directory ${root} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  if (!rootStat.isDirectory()) throw new ExporterError("ERR_LAYER_SOURCE", `layer directory ${root} is not a directory`);
  await walkDir(root, "", visit, options);
}

async function walkDir(
  abs: string,
  path: string,
  visit: (entry: LayerDirEntry) => Promise<boolean | void> | boolean | void,
  options: WalkOptions,
): Promise<void> {
  const names = await readdir(abs);
  const entries: { key: Buffer; entry: LayerDirEntry }[] = [];
  for (let start = 0; start < names.length; start += STAT_CONCURRENCY) {
    const batch = names.slice(start, start + STAT_CONCURRENCY);
    const stats = await Promise.all(batch.map((name) => lstat(join(abs, name))));
    batch.forEach((name, i) => {
      const stat = stats[i] as Stats;
      const kind = entryKind(stat);
      if (name.startsWith(".wh.")) {
        throw new ExporterError(
          "ERR_LAYER_SOURCE",
          `${join(abs, name)}: a file named ".wh.*" cannot be stored in an OCI layer (readers take it for a whiteout); rename it`,
        );
      }
      const key = Buffer.from(kind === "whiteout" ? `.wh.${name}` : name, "utf8");
      entries.push({ key, entry: { path: joinLayerPath(path, name), abs: join(abs, name), stat, kind } });
    });
  }
  entries.sort((a, b) => Buffer.compare(a.key, b.key));
  let ahead = 0;
  for (let i = 0; i < entries.length; i++) {
    for (; options.readAhead && ahead < entries.length && ahead < i + READ_AHEAD; ahead++) {
      const next = (entries[ahead] as { entry: LayerDirEntry }).entry;
      if (next.kind === "file" && options.readAhead(next)) {
        next.content = readWhole(next.abs, next.stat.size);
        next.content.catch(() => undefined); // reported when the visit awaits it
      }
    }
    const entry = (entries[i] as { entry: LayerDirEntry }).entry;
    const descend = await visit(entry);
    if (entry.kind === "dir" && descend !== false) await walkDir(entry.abs, entry.path, visit, options);
  }
}

/** A file's content, which must be `size` bytes (one byte more is asked for, to notice growth). */
export async function readWhole(path: string, size: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.allocUnsafe(size + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** Linux major/minor device numbers of a dev_t (glibc's gnu_dev_major/minor). */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const value = BigInt(rdev);
  const major = Number(((value >> 8n) & 0xfffn) | ((value >> 32n) & ~0xfffn));
  const minor = Number((value & 0xffn) | ((value >> 12n) & ~0xffn));
  return { major, minor };
}
