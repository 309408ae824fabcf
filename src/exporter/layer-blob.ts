import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack as createPack, type Pack } from "tar-stream";
import { compressionLevel, createCompressor } from "./compression.ts";
import { HashTap } from "./digest.ts";
import { checkEpoch } from "./epoch.ts";
import { ExporterError } from "./errors.ts";
import { layerMediaType, type LayerCompression } from "./media-types.ts";
import { baseName, joinLayerPath, normalizeOpaqueDir, parentOf } from "./paths.ts";
import { FsEntryWriter, isSmallFile } from "./tar-entries.ts";
import { addTarEntry, allOrFirstError, setOwnerAndTime } from "./tar-util.ts";
import { walkLayer, type LayerDirEntry } from "./walk.ts";

/** A layer as the snapshotter keeps it: an overlayfs upper directory and its opaque directories. */
export interface LayerSource {
  /** The directory holding what the layer adds; deleted paths are 0:0 character devices. */
  dir: string;
  /** Directories (relative to `dir`, e.g. "etc/apt") that hide the lower layers' content. */
  opaqueDirs: readonly string[];
}

export interface LayerBlob {
  /** sha256 of the uncompressed tar (what the image config lists in rootfs.diff_ids). */
  diffId: string;
  /** sha256 of the blob as stored (compressed). */
  digest: string;
  /** Size of the blob in bytes. */
  size: number;
  mediaType: string;
  /** The blob file. */
  path: string;
}

export interface WriteLayerOptions {
  compression: LayerCompression;
  /** gzip: 0-9 (default 6); zstd: 1-22 (default 3). */
  level?: number;
  /** Clamp every mtime to at most this many seconds since the epoch (SOURCE_DATE_EPOCH). */
  sourceDateEpoch?: number;
}

const COMPRESSIONS: readonly LayerCompression[] = ["gzip", "zstd", "uncompressed"];

const S_IFREG = 0o100000;

/**
 * Writes a layer directory as an OCI layer tar into `outDir/<hex of digest>` (so `outDir` can be
 * a content store's `blobs/sha256`). Entries are sorted (byte order, a directory before its
 * children), so the same tree always gives the same bytes. Whiteouts become `.wh.<name>`,
 * opaque directories get a `<dir>/.wh..wh..opq` entry right after their own. Streams end to end;
 * zstd compresses in its own threads while the tar is packed and hashed.
 */
export async function writeLayerBlob(layer: LayerSource, outDir: string, options: WriteLayerOptions): Promise<LayerBlob> {
  const opaque = new Set(layer.opaqueDirs.map(normalizeOpaqueDir));
  if (!COMPRESSIONS.includes(options.compression)) {
    throw new ExporterError("ERR_BAD_OPTION", `unknown layer compression ${JSON.stringify(options.compression)}`, { hint: "use gzip, zstd or uncompressed" });
  }
  const level = compressionLevel(options.compression, options.level);
  const epoch = options.sourceDateEpoch;
  if (epoch !== undefined) checkEpoch(epoch);
  const compressor = await createCompressor(options.compression, level);

  await mkdir(outDir, { recursive: true });
  const tmp = join(outDir, `.tmp-${randomUUID()}`);
  const pack = createPack();
  const producing = packLayer(pack, layer.dir, opaque, epoch).then(
    () => pack.finalize(),
    (error: unknown) => {
      pack.destroy(error as Error);
      throw error;
    },
  );

  const tar = new HashTap();
  const stored = compressor ? new HashTap() : tar;
  try {
    const source = Readable.from(pack, { objectMode: false });
    await allOrFirstError([
      producing,
      compressor ? pipeline(source, tar, compressor, stored, createWriteStream(tmp)) : pipeline(source, tar, createWriteStream(tmp)),
    ]);
    const diffId = tar.digest();
    const digest = stored === tar ? diffId : stored.digest();
    const path = join(outDir, digest.slice("sha256:".length));
    await rename(tmp, path);
    return {
      diffId,
      digest,
      size: stored.bytes,
      mediaType: layerMediaType(options.compression),
      path,
    };
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

async function packLayer(pack: Pack, root: string, opaque: Set<string>, epoch: number | undefined): Promise<void> {
  const seenOpaque = new Set<string>();
  const time = (mtimeMs: number) => {
    const seconds = Math.floor(mtimeMs / 1000);
    return epoch === undefined ? seconds : Math.min(seconds, epoch);
  };
  const marker = (name: string) =>
    // Whiteouts and opaque markers carry no metadata of their own: mode 0, root, mtime 0 (as containerd writes them).
    addTarEntry(pack, setOwnerAndTime({ name, type: "file", mode: S_IFREG, size: 0 }, 0, 0, 0));

  if (opaque.has("")) {
    seenOpaque.add("");
    await marker(".wh..wh..opq");
  }

  const writer = new FsEntryWriter(pack, time);
  const visit = async (entry: LayerDirEntry): Promise<void> => {
    if (entry.kind === "whiteout") {
      await marker(joinLayerPath(parentOf(entry.path), `.wh.${baseName(entry.path)}`));
      return;
    }
    await writer.add(entry);
    if (entry.kind === "dir" && opaque.has(entry.path)) {
      seenOpaque.add(entry.path);
      await marker(`${entry.path}/.wh..wh..opq`);
    }
  };
  await walkLayer(root, visit, { readAhead: isSmallFile });

  for (const dir of opaque) {
    if (!seenOpaque.has(dir)) {
      throw new ExporterError(
        "ERR_LAYER_SOURCE",
        `opaque directory ${JSON.stringify(dir)} is not a directory of layer ${root}: list only directories the layer holds`,
      );
    }
  }
}
