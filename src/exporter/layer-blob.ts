import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, readlink, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { pack as createPack, type Pack } from "tar-stream";
import { HashTap } from "./digest.ts";
import { ExporterError } from "./errors.ts";
import { MEDIA_TYPES } from "./media-types.ts";
import { baseName, joinLayerPath, normalizeOpaqueDir, parentOf } from "./paths.ts";
import { addTarEntry, allOrFirstError, setOwnerAndTime, type TarHeader } from "./tar-util.ts";
import { deviceNumbers, walkLayer, type LayerDirEntry } from "./walk.ts";

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
  compression: "gzip" | "uncompressed";
  /** gzip level, 0-9 (default 6). */
  level?: number;
  /** Clamp every mtime to at most this many seconds since the epoch (SOURCE_DATE_EPOCH). */
  sourceDateEpoch?: number;
}

/** Files up to this size are read whole, a few ahead of the tar writer, instead of streamed. */
const SMALL_FILE = 64 * 1024;
const CHUNK = 64 * 1024;
const S_IFREG = 0o100000;

/**
 * Writes a layer directory as an OCI layer tar into `outDir/<hex of digest>` (so `outDir` can be
 * a content store's `blobs/sha256`). Entries are sorted (byte order, a directory before its
 * children), so the same tree always gives the same bytes. Whiteouts become `.wh.<name>`,
 * opaque directories get a `<dir>/.wh..wh..opq` entry right after their own. Streams end to end.
 */
export async function writeLayerBlob(layer: LayerSource, outDir: string, options: WriteLayerOptions): Promise<LayerBlob> {
  const opaque = new Set(layer.opaqueDirs.map(normalizeOpaqueDir));
  const level = options.level ?? 6;
  if (options.compression === "gzip" && (!Number.isInteger(level) || level < 0 || level > 9)) {
    throw new RangeError(`gzip level must be an integer from 0 to 9, got ${level}`);
  }
  const epoch = options.sourceDateEpoch;
  if (epoch !== undefined && (!Number.isFinite(epoch) || epoch < 0)) {
    throw new RangeError(`sourceDateEpoch must be a non-negative number of seconds, got ${epoch}`);
  }

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
  const stored = options.compression === "gzip" ? new HashTap() : tar;
  try {
    const source = Readable.from(pack, { objectMode: false });
    await allOrFirstError([
      producing,
      stored === tar
        ? pipeline(source, tar, createWriteStream(tmp))
        : pipeline(source, tar, createGzip({ level, chunkSize: CHUNK }), stored, createWriteStream(tmp)),
    ]);
    const diffId = tar.digest();
    const digest = stored === tar ? diffId : stored.digest();
    const path = join(outDir, digest.slice("sha256:".length));
    await rename(tmp, path);
    return {
      diffId,
      digest,
      size: stored.bytes,
      mediaType: options.compression === "gzip" ? MEDIA_TYPES.ociLayerGzip : MEDIA_TYPES.ociLayer,
      path,
    };
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

async function packLayer(pack: Pack, root: string, opaque: Set<string>, epoch: number | undefined): Promise<void> {
  const seenOpaque = new Set<string>();
  /** dev:ino → tar name of the first path of a multiply-linked file. */
  const links = new Map<string, string>();
  const time = (mtimeMs: number) => {
    const seconds = Math.floor(mtimeMs / 1000);
    return epoch === undefined ? seconds : Math.min(seconds, Math.floor(epoch));
  };
  const marker = (name: string) =>
    // Whiteouts and opaque markers carry no metadata of their own: mode 0, root, the epoch (as containerd writes them).
    addTarEntry(pack, setOwnerAndTime({ name, type: "file", mode: S_IFREG, size: 0 }, 0, 0, 0));

  if (opaque.has("")) {
    seenOpaque.add("");
    await marker(".wh..wh..opq");
  }

  const visit = async (entry: LayerDirEntry): Promise<void> => {
    const { stat, path } = entry;
    const header = (fields: TarHeader) => setOwnerAndTime(fields, stat.uid, stat.gid, time(stat.mtimeMs));
    switch (entry.kind) {
      case "dir":
        await addTarEntry(pack, header({ name: `${path}/`, type: "directory", mode: stat.mode }));
        if (opaque.has(path)) {
          seenOpaque.add(path);
          await marker(`${path}/.wh..wh..opq`);
        }
        return;
      case "whiteout":
        await marker(joinLayerPath(parentOf(path), `.wh.${baseName(path)}`));
        return;
      case "symlink":
        await addTarEntry(pack, header({ name: path, type: "symlink", mode: stat.mode, linkname: await readlink(entry.abs) }));
        return;
      case "char":
      case "block": {
        const { major, minor } = deviceNumbers(stat.rdev);
        const type = entry.kind === "char" ? "character-device" : "block-device";
        if (await hardLink(entry, links, pack, header)) return;
        await addTarEntry(pack, header({ name: path, type, mode: stat.mode, devmajor: major, devminor: minor }));
        return;
      }
      case "fifo":
        if (await hardLink(entry, links, pack, header)) return;
        await addTarEntry(pack, header({ name: path, type: "fifo", mode: stat.mode }));
        return;
      case "socket":
        // A tar cannot hold a socket; docker and BuildKit leave them out too.
        return;
      case "file": {
        if (await hardLink(entry, links, pack, header)) return;
        const fields = header({ name: path, type: "file", mode: stat.mode, size: stat.size });
        if (entry.content) {
          const data = await entry.content;
          if (data.length !== stat.size) throw changed(entry, data.length);
          await addTarEntry(pack, fields, data);
        } else {
          await addTarEntry(pack, fields, sizedStream(entry));
        }
        return;
      }
    }
  };
  await walkLayer(root, visit, { readAhead: (entry) => entry.stat.size <= SMALL_FILE });

  for (const dir of opaque) {
    if (!seenOpaque.has(dir)) {
      throw new ExporterError(
        "ERR_LAYER_SOURCE",
        `opaque directory ${JSON.stringify(dir)} is not a directory of layer ${root}: list only directories the layer holds`,
      );
    }
  }
}

/** Writes a tar hard link if this inode was already written under another name in this layer. */
async function hardLink(
  entry: LayerDirEntry,
  links: Map<string, string>,
  pack: Pack,
  header: (fields: TarHeader) => TarHeader,
): Promise<boolean> {
  if (entry.stat.nlink < 2) return false;
  // Exact inode numbers: they may not fit a double.
  const exact = await lstat(entry.abs, { bigint: true });
  const key = `${exact.dev}:${exact.ino}`;
  const first = links.get(key);
  if (first === undefined) {
    links.set(key, entry.path);
    return false;
  }
  await addTarEntry(pack, header({ name: entry.path, type: "link", mode: entry.stat.mode, linkname: first }));
  return true;
}

/** The file's content, exactly `stat.size` bytes; a file that shrank while being read is an error. */
async function* sizedStream(entry: LayerDirEntry): AsyncGenerator<Buffer> {
  let bytes = 0;
  for await (const chunk of createReadStream(entry.abs, { end: entry.stat.size - 1, highWaterMark: CHUNK })) {
    bytes += (chunk as Buffer).length;
    yield chunk as Buffer;
  }
  if (bytes !== entry.stat.size) throw changed(entry, bytes);
}

function changed(entry: LayerDirEntry, bytes: number): ExporterError {
  return new ExporterError(
    "ERR_LAYER_SOURCE",
    `${entry.abs} changed while the layer was being written (${entry.stat.size} bytes when listed, ${bytes} when read): ` +
      "layers must not be modified during export",
  );
}
