import { constants as fsConstants, createReadStream, type Stats } from "node:fs";
import { chmod, chown, lchown, link, lstat, lutimes, mkdir, open, readdir, readlink, rm, symlink, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { extract as createExtract, type Header } from "tar-stream";
import { createDecompressor, sniffCompression } from "./compression.ts";
import { HashTap } from "./digest.ts";
import { ExporterError, UnsafeLayerEntryError } from "./errors.ts";
import { layerCompression } from "./media-types.ts";
import { makeSpecialNodes, type SpecialNode } from "./mknod.ts";
import { ancestors, baseName, joinLayerPath, parentOf, splitLayerPath } from "./paths.ts";
import { feedTar, ownerAndTime } from "./tar-util.ts";

export interface ExtractLayerOptions {
  /** Expected digest of the blob as stored; checked while reading (ERR_DIGEST_MISMATCH after the fact). */
  digest?: string;
  /** Expected sha256 of the uncompressed tar. */
  diffId?: string;
}

const CHUNK = 64 * 1024;
/** Flush queued device nodes every so many (one `sh` + `mknod` per node would be slow). */
const NODE_BATCH = 512;

/**
 * Extracts a layer tar (gzip, zstd or uncompressed, told apart by their magic bytes whatever the
 * media type says) into an empty directory, in
 * overlay upper format: `.wh.<name>` becomes a 0:0 character device, `.wh..wh..opq` markers
 * are returned (layer-relative directories, "." for the root). Entries that would land
 * outside `intoDir` are refused: absolute names, '..' components, paths through a symlink
 * made by an earlier entry, hard links to such places. Owners are restored when running as
 * root; modes and mtimes always; xattrs (SCHILY.xattr PAX records) are ignored.
 * On error, `intoDir` holds a partial extraction: the caller removes it.
 */
export async function extractLayer(
  blobPath: string,
  mediaType: string,
  intoDir: string,
  options: ExtractLayerOptions = {},
): Promise<{ opaqueDirs: string[] }> {
  const declared = layerCompression(mediaType);
  if (declared === undefined) {
    throw new ExporterError("ERR_LAYER_UNSUPPORTED", `layer ${blobPath}: ${JSON.stringify(mediaType)} is not a layer media type`);
  }
  const actual = await sniffCompression(blobPath);
  await mkdir(intoDir, { recursive: true });
  if ((await readdir(intoDir)).length > 0) {
    throw new ExporterError("ERR_LAYER_BAD_ENTRY", `cannot extract layer ${blobPath} into ${intoDir}: the directory is not empty`);
  }

  const decompressor = await createDecompressor(actual);
  const stored = new HashTap();
  const tar = decompressor ? new HashTap() : stored;
  const extract = createExtract();
  // The extractor's own error ("Unexpected end of data") says more than the entry stream's "destroyed".
  let extractError: unknown;
  extract.on("error", (error: unknown) => (extractError ??= error));
  const feed = (source: AsyncIterable<Buffer>) => feedTar(extract, source);
  const input = createReadStream(blobPath, { highWaterMark: CHUNK });
  const feeding = (decompressor ? pipeline(input, stored, decompressor, tar, feed) : pipeline(input, stored, feed)).catch((error: unknown) => {
    extract.destroy(error as Error);
    throw error;
  });

  const writer = new LayerWriter(blobPath, intoDir);
  let failure: unknown;
  try {
    for await (const entry of extract) await writer.add(entry.header, entry as AsyncIterable<Buffer>);
    await writer.finish();
  } catch (error) {
    failure = error;
    extract.destroy();
  }
  const fed = await feeding.then(
    () => undefined,
    (error: unknown) => error ?? new Error("reading the layer failed"),
  );
  if (failure !== undefined) throw wrapError(blobPath, intoDir, failure instanceof ExporterError || typeof (failure as NodeJS.ErrnoException).syscall === "string" ? failure : (extractError ?? failure));
  if (fed !== undefined) throw wrapError(blobPath, intoDir, fed);

  const storedDigest = stored.digest();
  const diffId = tar === stored ? storedDigest : tar.digest();
  if (options.digest !== undefined && storedDigest !== options.digest) throw mismatch(blobPath, "digest", options.digest, storedDigest);
  if (options.diffId !== undefined && diffId !== options.diffId) throw mismatch(blobPath, "diff id", options.diffId, diffId);
  return { opaqueDirs: [...writer.opaque].map((dir) => (dir === "" ? "." : dir)).sort() };
}

function mismatch(blob: string, what: string, expected: string, actual: string): ExporterError {
  return new ExporterError(
    "ERR_DIGEST_MISMATCH",
    `layer ${blob}: ${what} mismatch (expected ${expected}, got ${actual}); the blob is corrupt or not the one the manifest names: ` +
      "discard the extracted files and fetch the layer again",
  );
}

function wrapError(blob: string, intoDir: string, error: unknown): unknown {
  if (error instanceof ExporterError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof (error as NodeJS.ErrnoException).syscall === "string") {
    // The file system refused (no space, permissions...): not the layer's fault.
    return new ExporterError("ERR_LAYER_IO", `cannot extract layer ${blob} into ${intoDir}: ${message}`, { cause: error });
  }
  return new ExporterError("ERR_LAYER_BAD_ENTRY", `layer ${blob} cannot be read as a tar: ${message}`, { cause: error });
}

interface PendingNode extends SpecialNode {
  uid: number;
  gid: number;
  mtimeSeconds: number;
}

interface DirMeta {
  mode: number;
  uid: number;
  gid: number;
  mtimeSeconds: number;
}

/** Writes tar entries below a root, refusing any that would leave it. */
class LayerWriter {
  readonly opaque = new Set<string>();
  /** Layer paths known to be real directories (not symlinks) made by this extraction. */
  private readonly dirs = new Set<string>([""]);
  /** Device nodes and fifos waiting for one batched `mknod` run. */
  private readonly pending = new Map<string, PendingNode>();
  /** Metadata of directory entries, applied at the end (writing children changes mtimes). */
  private readonly dirMeta = new Map<string, DirMeta>();
  private readonly root: boolean = process.getuid?.() === 0;
  /** A whiteout made by this extraction that new ones are hard-linked to. */
  private whiteoutTemplate: string | undefined;

  constructor(
    private readonly blob: string,
    private readonly base: string,
  ) {}

  private abs(path: string): string {
    return path === "" ? this.base : join(this.base, path);
  }

  private unsafe(entry: string, reason: string): UnsafeLayerEntryError {
    return new UnsafeLayerEntryError(this.blob, entry, reason);
  }

  private bad(entry: string, reason: string): ExporterError {
    return new ExporterError("ERR_LAYER_BAD_ENTRY", `layer ${this.blob}: tar entry ${JSON.stringify(entry)}: ${reason}`);
  }

  async add(header: Header, body: AsyncIterable<Buffer>): Promise<void> {
    const name = header.name;
    const split = splitLayerPath(name);
    if ("unsafe" in split) throw this.unsafe(name, split.unsafe);
    const path = split.parts.join("/");
    const isFile = header.type === "file" || header.type === "contiguous-file";
    if (!isFile) await drain(body);
    if (path === "") return; // the root ("./"): its metadata belongs to the lower layers' root

    const base = baseName(path);
    if (base.startsWith(".wh.")) {
      if (isFile) await drain(body);
      return this.whiteout(name, path, base);
    }
    const meta = ownerAndTime(header);
    switch (header.type) {
      case "file":
      case "contiguous-file":
        return this.file(name, path, header.mode, meta, body);
      case "directory":
        return this.directory(name, path, { mode: header.mode, ...meta });
      case "symlink":
        return this.symlink(name, path, header.linkname, meta);
      case "link":
        return this.hardLink(name, path, header.linkname);
      case "character-device":
      case "block-device":
      case "fifo":
        await this.prepare(name, path, false);
        this.queue(path, {
          path: this.abs(path),
          type: header.type === "fifo" ? "p" : header.type === "character-device" ? "c" : "b",
          mode: header.mode,
          major: header.devmajor,
          minor: header.devminor,
          ...meta,
        });
        return;
      default:
        throw this.bad(name, `unsupported tar entry type ${JSON.stringify(header.type)}`);
    }
  }

  private async whiteout(name: string, path: string, base: string): Promise<void> {
    const parent = parentOf(path);
    if (base === ".wh..wh..opq") {
      await this.ensureParents(name, joinLayerPath(parent, "x"));
      this.opaque.add(parent);
      return;
    }
    if (base.startsWith(".wh..wh.")) return; // aufs bookkeeping (.wh..wh.plnk and the like): nothing to apply
    const hidden = base.slice(".wh.".length);
    if (hidden === "" || hidden === "." || hidden === "..") throw this.unsafe(name, `it whites out ${JSON.stringify(hidden)}, which is not a file name`);
    const target = joinLayerPath(parent, hidden);
    await this.prepare(name, target, false);
    await this.makeWhiteout(this.abs(target));
  }

  /**
   * A 0:0 character device. The first costs a `mknod` process; the others are hard links to
   * it (one syscall), as overlayfs shares one whiteout inode itself.
   */
  private async makeWhiteout(abs: string): Promise<void> {
    if (this.whiteoutTemplate !== undefined) {
      try {
        await link(this.whiteoutTemplate, abs);
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "EMLINK" && code !== "ENOENT" && code !== "EPERM" && code !== "EXDEV") throw error;
      }
    }
    await makeSpecialNodes([{ path: abs, type: "c", mode: 0, major: 0, minor: 0 }]);
    this.whiteoutTemplate = abs;
  }

  private async file(
    name: string,
    path: string,
    mode: number,
    meta: { uid: number; gid: number; mtimeSeconds: number },
    body: AsyncIterable<Buffer>,
  ): Promise<void> {
    await this.prepare(name, path, false);
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
    const handle = await open(this.abs(path), flags, 0o600);
    try {
      for await (const chunk of body) {
        let offset = 0;
        while (offset < chunk.length) offset += (await handle.write(chunk, offset)).bytesWritten;
      }
      if (this.root) await handle.chown(meta.uid, meta.gid);
      await handle.chmod(mode & 0o7777);
      await handle.utimes(meta.mtimeSeconds, meta.mtimeSeconds);
    } finally {
      await handle.close();
    }
  }

  private async directory(name: string, path: string, meta: DirMeta): Promise<void> {
    const exists = await this.prepare(name, path, true);
    if (!exists) await mkdir(this.abs(path), { mode: 0o700 });
    this.dirs.add(path);
    this.dirMeta.set(path, meta);
  }

  private async symlink(name: string, path: string, target: string, meta: { uid: number; gid: number; mtimeSeconds: number }): Promise<void> {
    if (!target) throw this.bad(name, "symbolic link without a target");
    await this.prepare(name, path, false);
    const abs = this.abs(path);
    await symlink(target, abs);
    if (this.root) await lchown(abs, meta.uid, meta.gid);
    await lutimes(abs, meta.mtimeSeconds, meta.mtimeSeconds);
  }

  private async hardLink(name: string, path: string, linkname: string): Promise<void> {
    const split = splitLayerPath(linkname ?? "");
    if ("unsafe" in split) throw this.unsafe(name, `it is a hard link to ${JSON.stringify(linkname)}, and ${split.unsafe}`);
    const target = split.parts.join("/");
    if (target === "") throw this.bad(name, "hard link without a target");
    for (const dir of ancestors(target)) {
      if (this.dirs.has(dir)) continue;
      const stat = await lstatOrNull(this.abs(dir));
      if (stat?.isSymbolicLink()) {
        throw this.unsafe(name, `it is a hard link to ${JSON.stringify(linkname)}, whose parent ${JSON.stringify(dir)} is a symbolic link made by an earlier entry`);
      }
      if (!stat?.isDirectory()) break; // the lstat of the target below reports it missing
    }
    if (this.pending.has(target)) await this.flush();
    const stat = await lstatOrNull(this.abs(target));
    if (stat === null) throw this.bad(name, `hard link target ${JSON.stringify(linkname)} does not exist (it must come earlier in the tar)`);
    if (stat.isDirectory()) throw this.bad(name, `hard link target ${JSON.stringify(linkname)} is a directory`);
    if (target === path) return;
    await this.prepare(name, path, false);
    await link(this.abs(target), this.abs(path));
  }

  private queue(path: string, node: PendingNode): void {
    this.pending.set(path, node); // created by flush(), from the next prepare() on a full batch or finish()
  }

  /**
   * Makes sure the parents of `path` are real directories inside the root (creating missing
   * ones), then removes whatever is at `path` unless it is a directory and `keepDir` is set.
   * Returns whether a directory was kept.
   */
  private async prepare(name: string, path: string, keepDir: boolean): Promise<boolean> {
    if (this.pending.size >= NODE_BATCH) await this.flush();
    await this.ensureParents(name, path);
    if (this.pending.delete(path)) return false; // queued, not yet on disk
    const abs = this.abs(path);
    const stat = await lstatOrNull(abs);
    if (stat === null) return false;
    if (abs === this.whiteoutTemplate) this.whiteoutTemplate = undefined;
    if (stat.isDirectory()) {
      if (keepDir) return true;
      await rm(abs, { recursive: true, force: true });
      this.forget(path);
    } else {
      await unlink(abs);
    }
    return false;
  }

  private async ensureParents(name: string, path: string): Promise<void> {
    const parent = parentOf(path);
    if (this.dirs.has(parent)) return;
    for (const dir of ancestors(path)) {
      if (this.dirs.has(dir)) continue;
      if (this.pending.has(dir)) throw this.bad(name, `its parent ${JSON.stringify(dir)} is a device node or fifo made by an earlier entry`);
      const abs = this.abs(dir);
      const stat = await lstatOrNull(abs);
      if (stat === null) {
        await mkdir(abs, { mode: 0o755 });
      } else if (stat.isSymbolicLink()) {
        const target = await readlink(abs).catch(() => "?");
        throw this.unsafe(
          name,
          `its parent ${JSON.stringify(dir)} is a symbolic link (to ${JSON.stringify(target)}) made by an earlier entry, and writing through it could leave the root`,
        );
      } else if (!stat.isDirectory()) {
        throw this.bad(name, `its parent ${JSON.stringify(dir)} is not a directory`);
      }
      this.dirs.add(dir);
    }
  }

  /** Drops what is known about a removed directory and everything below it. */
  private forget(path: string): void {
    const prefix = path + "/";
    const below = (key: string) => key === path || key.startsWith(prefix);
    for (const key of this.dirs) if (below(key)) this.dirs.delete(key);
    for (const key of this.dirMeta.keys()) if (below(key)) this.dirMeta.delete(key);
    for (const key of this.pending.keys()) if (below(key)) this.pending.delete(key);
    for (const key of this.opaque) if (below(key)) this.opaque.delete(key);
    if (this.whiteoutTemplate !== undefined && this.whiteoutTemplate.startsWith(this.abs(path) + "/")) this.whiteoutTemplate = undefined;
  }

  private async flush(): Promise<void> {
    const nodes = [...this.pending.values()];
    this.pending.clear();
    if (nodes.length === 0) return;
    await makeSpecialNodes(nodes);
    for (const node of nodes) {
      if (this.root) await lchown(node.path, node.uid, node.gid);
      await lutimes(node.path, node.mtimeSeconds, node.mtimeSeconds);
    }
  }

  async finish(): Promise<void> {
    await this.flush();
    // Deepest first, so setting a directory's mtime is not undone by its children.
    const dirs = [...this.dirMeta].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [path, meta] of dirs) {
      const abs = this.abs(path);
      if (this.root) await chown(abs, meta.uid, meta.gid);
      await chmod(abs, meta.mode & 0o7777);
      await utimes(abs, meta.mtimeSeconds, meta.mtimeSeconds);
    }
  }
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

async function drain(body: AsyncIterable<Buffer>): Promise<void> {
  for await (const _chunk of body) {
    // discard
  }
}
