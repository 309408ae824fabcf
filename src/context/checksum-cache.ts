/**
 * A persistent cache of file content digests, so that a warm build does not
 * read unchanged files again.
 *
 * Entries are keyed by absolute host path and are valid only while the file's
 * identity is unchanged: (dev, ino, size, mtime ns, ctime ns). ctime and the
 * inode catch a file rewritten with the same size and its mtime put back (the
 * kernel sets ctime on every change and it cannot be set by users), or
 * replaced by rename.
 *
 * The file is JSON, written atomically (temporary file + rename). Two
 * processes saving at once merge what is on disk with their own entries; a
 * lost entry only costs one re-read. A missing, corrupt or foreign file is
 * treated as empty.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { BigIntStats } from "node:fs";

const FORMAT = "tsbuild-context-checksums";
const VERSION = 1;
/** Entries not used for this many days are dropped when the cache is saved. */
const MAX_AGE_DAYS = 30;
const MS_PER_DAY = 86_400_000;

/** What makes a file "the same file" for the cache. */
export interface FileIdentity {
  /** `dev:ino:size:mtimeNs:ctimeNs`. */
  readonly key: string;
  readonly ctimeNs: bigint;
}

export function fileIdentity(stats: BigIntStats): FileIdentity {
  return {
    key: `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`,
    ctimeNs: stats.ctimeNs,
  };
}

/**
 * Whether a digest computed from a read that started at `readStartMs` may be
 * cached for a file whose ctime is `ctimeNs`. Timestamps are taken from a
 * clock with a granularity (a kernel tick on many filesystems, 2 s on FAT):
 * a change made within the same tick as the ctime we saw would leave ctime
 * unchanged, so a file changed that recently is hashed again next time
 * (Git's "racily clean" rule).
 */
export function isCacheable(ctimeNs: bigint, readStartMs: number): boolean {
  const coarse = ctimeNs % 1_000_000_000n === 0n; // whole seconds: a coarse filesystem
  const windowNs = coarse ? 2_500_000_000n : 50_000_000n;
  return BigInt(Math.floor(readStartMs)) * 1_000_000n - ctimeNs > windowNs;
}

interface Entry {
  key: string;
  digest: string;
  /** Day (since the epoch) of the last use. */
  day: number;
}

type SerializedEntry = [hostPath: string, key: string, digest: string, day: number];

export class ChecksumCache {
  private readonly entries = new Map<string, Entry>();
  private loaded = false;
  private dirty = false;
  private readonly today = Math.floor(Date.now() / MS_PER_DAY);

  /** `file` undefined: an in-memory cache only. */
  constructor(readonly file: string | undefined) {}

  /** The digest recorded for this path if the file is still the same. */
  get(hostPath: string, identity: FileIdentity): string | undefined {
    this.load();
    const entry = this.entries.get(hostPath);
    if (entry === undefined || entry.key !== identity.key) return undefined;
    if (entry.day !== this.today) {
      entry.day = this.today;
      this.dirty = true;
    }
    return entry.digest;
  }

  set(hostPath: string, identity: FileIdentity, digest: string): void {
    this.load();
    this.entries.set(hostPath, { key: identity.key, digest, day: this.today });
    this.dirty = true;
  }

  /** Writes the cache if anything changed: merged with what is on disk, atomically. */
  async save(): Promise<void> {
    if (this.file === undefined || !this.dirty) return;
    const merged = new Map<string, Entry>();
    for (const [hostPath, entry] of readEntries(this.file)) merged.set(hostPath, entry);
    for (const [hostPath, entry] of this.entries) merged.set(hostPath, entry); // ours win
    const oldest = this.today - MAX_AGE_DAYS;
    const serialized: SerializedEntry[] = [];
    for (const [hostPath, entry] of merged) {
      if (entry.day >= oldest) serialized.push([hostPath, entry.key, entry.digest, entry.day]);
    }
    const text = JSON.stringify({ format: FORMAT, version: VERSION, entries: serialized });
    await mkdir(path.dirname(this.file), { recursive: true });
    const temp = `${this.file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      await writeFile(temp, text, { mode: 0o600 });
      await rename(temp, this.file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    this.dirty = false;
  }

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    if (this.file === undefined) return;
    for (const [hostPath, entry] of readEntries(this.file)) this.entries.set(hostPath, entry);
  }
}

/** Reads a cache file; anything unreadable or malformed counts as empty. */
function readEntries(file: string): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return entries;
  }
  if (typeof parsed !== "object" || parsed === null) return entries;
  const doc = parsed as { format?: unknown; version?: unknown; entries?: unknown };
  if (doc.format !== FORMAT || doc.version !== VERSION || !Array.isArray(doc.entries)) return entries;
  for (const item of doc.entries as unknown[]) {
    if (!Array.isArray(item) || item.length !== 4) continue;
    const [hostPath, key, digest, day] = item as unknown[];
    if (typeof hostPath !== "string" || typeof key !== "string" || typeof digest !== "string") continue;
    if (typeof day !== "number" || digest.length !== 64) continue;
    entries.set(hostPath, { key, digest, day });
  }
  return entries;
}
