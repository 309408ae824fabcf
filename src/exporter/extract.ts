import { createReadStream, type Stats } from "node:fs";
import { lchown, link, lutimes, mkdir, readdir } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { extract as createExtract, type Header } from "tar-stream";
import { createDecompressor, sniffCompression } from "./compression.ts";
import { HashTap } from "./digest.ts";
import { ExporterError, UnsafeLayerEntryError } from "./errors.ts";
import { layerCompression } from "./media-types.ts";
import { makeSpecialNodes, type SpecialNode } from "./mknod.ts";
import { baseName, joinLayerPath, parentOf } from "./paths.ts";
import { drain, forgetBelow, TarEntryWriter, type EntryMeta } from "./tar-entry-writer.ts";
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

interface PendingNode extends SpecialNode, EntryMeta {}

/** Writes layer entries below a root, refusing any that would leave it; applies overlay whiteouts. */
class LayerWriter extends TarEntryWriter {
  readonly opaque = new Set<string>();
  /** Device nodes and fifos waiting for one batched `mknod` run. */
  private readonly pending = new Map<string, PendingNode>();
  /** A whiteout made by this extraction that new ones are hard-linked to. */
  private whiteoutTemplate: string | undefined;

  constructor(
    private readonly blob: string,
    base: string,
  ) {
    super(base);
  }

  protected unsafe(entry: string, reason: string): UnsafeLayerEntryError {
    return new UnsafeLayerEntryError(this.blob, entry, reason);
  }

  protected bad(entry: string, reason: string): ExporterError {
    return new ExporterError("ERR_LAYER_BAD_ENTRY", `layer ${this.blob}: tar entry ${JSON.stringify(entry)}: ${reason}`);
  }

  protected linkOutsideReason(linkname: string, unsafe: string): string {
    return `it is a hard link to ${JSON.stringify(linkname)}, and ${unsafe}`;
  }

  protected linkThroughSymlinkReason(linkname: string, dir: string): string {
    return `it is a hard link to ${JSON.stringify(linkname)}, whose parent ${JSON.stringify(dir)} is a symbolic link made by an earlier entry`;
  }

  protected missingLinkTargetReason(linkname: string): string {
    return `hard link target ${JSON.stringify(linkname)} does not exist (it must come earlier in the tar)`;
  }

  protected parentSymlinkReason(dir: string, target: string): string {
    return `its parent ${JSON.stringify(dir)} is a symbolic link (to ${JSON.stringify(target)}) made by an earlier entry, and writing through it could leave the root`;
  }

  async add(header: Header, body: AsyncIterable<Buffer>): Promise<void> {
    const name = header.name;
    const path = this.entryPath(name);
    const isFile = header.type === "file" || header.type === "contiguous-file";
    if (!isFile) await drain(body);
    if (path === "") return; // the root ("./"): its metadata belongs to the lower layers' root

    const base = baseName(path);
    if (base.startsWith(".wh.")) {
      if (isFile) await drain(body);
      return this.whiteout(name, path, base);
    }
    const { uid, gid, mtimeSeconds } = ownerAndTime(header);
    return this.write(name, path, header, { uid, gid, atime: mtimeSeconds, mtime: mtimeSeconds }, body);
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

  protected async special(name: string, path: string, header: Header, meta: EntryMeta): Promise<void> {
    await this.prepare(name, path, false);
    // Created by flush(), from the next prepare() on a full batch, a hard link to it or finish().
    this.pending.set(path, {
      path: this.abs(path),
      type: header.type === "fifo" ? "p" : header.type === "character-device" ? "c" : "b",
      mode: header.mode,
      major: header.devmajor,
      minor: header.devminor,
      ...meta,
    });
  }

  protected override async materialize(path: string): Promise<void> {
    if (this.pending.has(path)) await this.flush();
  }

  /** Flushes a full batch first, so the queue stays bounded. */
  protected override async prepare(name: string, path: string, keepDir: boolean): Promise<boolean> {
    if (this.pending.size >= NODE_BATCH) await this.flush();
    return super.prepare(name, path, keepDir);
  }

  /** A node replaced before it was made is just dropped. */
  protected override unqueue(path: string): boolean {
    return this.pending.delete(path);
  }

  /** A removed template can no longer be linked to. */
  protected override replacing(abs: string): void {
    if (abs === this.whiteoutTemplate) this.whiteoutTemplate = undefined;
  }

  /** A queued node is not on disk yet, so lstat would call the parent missing. */
  protected override async statParent(name: string, dir: string): Promise<Stats | null> {
    if (this.pending.has(dir)) throw this.bad(name, `its parent ${JSON.stringify(dir)} is a device node or fifo made by an earlier entry`);
    return super.statParent(name, dir);
  }

  protected override forget(path: string): void {
    super.forget(path);
    forgetBelow(this.pending, path);
    forgetBelow(this.opaque, path);
    if (this.whiteoutTemplate !== undefined && this.whiteoutTemplate.startsWith(this.abs(path) + "/")) this.whiteoutTemplate = undefined;
  }

  private async flush(): Promise<void> {
    const nodes = [...this.pending.values()];
    this.pending.clear();
    if (nodes.length === 0) return;
    await makeSpecialNodes(nodes);
    for (const node of nodes) {
      if (this.asRoot) await lchown(node.path, node.uid, node.gid);
      await lutimes(node.path, node.atime, node.mtime);
    }
  }

  override async finish(): Promise<void> {
    await this.flush();
    await super.finish();
  }
}
