import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, realpath, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join, resolve as resolvePath, sep } from "node:path";
import type { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import pLimit from "p-limit";
import { unpackArchive, type UnpackedArchive } from "./archive-unpack.ts";
import { createDecompressor, sniffCompression } from "./compression.ts";
import { HashTap, isDigest, sha256Digest } from "./digest.ts";
import { ExporterError } from "./errors.ts";
import type { ImageConfig, Platform } from "./image.ts";
import { layerMediaType, type LayerCompression } from "./media-types.ts";
import { readLayoutImages } from "./oci-read.ts";
import { splitLayerPath } from "./paths.ts";
import { discard } from "./tar-util.ts";

export interface ArchiveLayer {
  /** The blob file (inside the temporary directory, or the layout directory read). */
  path: string;
  /** By the blob's magic bytes for docker archives (OCI media types); as the manifest says for OCI ones. */
  mediaType: string;
  /** sha256 of the blob as stored. */
  digest: string;
  /** sha256 of the uncompressed tar, checked against the config's rootfs.diff_ids. */
  diffId: string;
  size: number;
}

export interface ArchiveImage {
  /** docker: RepoTags as written ("app:1"); OCI: io.containerd.image.name, or a ref name that is a full reference. */
  tags: string[];
  config: ImageConfig;
  /** The config blob as archived: its sha256 (configDigest) is the image id. */
  configBytes: Buffer;
  configDigest: string;
  /** Bottom first. */
  layers: ArchiveLayer[];
}

export interface ImageArchive {
  format: "docker" | "oci";
  images: ArchiveImage[];
  /** Removes the temporary files (the layer paths are gone afterwards). */
  dispose(): Promise<void>;
}

export interface ReadImageArchiveOptions {
  /** Where a tar is unpacked (created if missing); it needs room for the whole archive. */
  tmpDir: string;
  /** For a multi-platform OCI image: the platform to read (default: the host's linux platform). */
  platform?: Platform;
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/** Layers verified at once (gunzip runs in the thread pool, hashing on the main thread). */
const verifyLimit = pLimit(2);

/**
 * Reads the images of an archive for `tsbuild load`: a `docker save` tar (the old
 * `<id>/layer.tar` layout or Docker 25's `blobs/sha256` one; manifest.json decides), an OCI
 * tar, either gzip- or zstd-compressed, or an OCI layout directory. Every layer is read once
 * here: its digest is computed (docker archives do not record it) and its uncompressed sha256
 * checked against the config's rootfs.diff_ids, so the layers need no check when extracted.
 * `file` is read sequentially (a pipe such as /dev/stdin works). Call dispose() when done.
 */
export async function readImageArchive(file: string, options: ReadImageArchiveOptions): Promise<ImageArchive> {
  const info = await stat(file).catch((error: unknown) => {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `image archive ${file} cannot be read: ${(error as Error).message}`, {
      cause: error,
      hint: "check the path (docker save -o FILE, or an OCI archive)",
    });
  });
  if (info.isDirectory()) {
    const archive: UnpackedArchive = { dir: file, resolve: (name) => resolveInDir(file, name), digestOf: () => undefined };
    const images = await readUnpacked(archive, file, options.platform);
    return { ...images, dispose: async () => {} };
  }
  const tmpDir = resolvePath(options.tmpDir);
  // The outermost directory mkdir made (undefined if tmpDir existed): removed again, if empty, by dispose.
  const made = await mkdir(tmpDir, { recursive: true });
  const work = await mkdtemp(join(tmpDir, "archive-"));
  const dispose = async () => {
    await rm(work, { recursive: true, force: true });
    for (let dir = tmpDir; made !== undefined; dir = dirname(dir)) {
      if (!(await rmdir(dir).then(() => true, () => false)) || dir === made) break;
    }
  };
  try {
    const archive = await unpackArchive(file, work, file, "ERR_IMAGE_ARCHIVE");
    const images = await readUnpacked(archive, file, options.platform);
    return { ...images, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

async function readUnpacked(archive: UnpackedArchive, shown: string, platform: Platform | undefined): Promise<Omit<ImageArchive, "dispose">> {
  const manifest = await archive.resolve("manifest.json");
  if (manifest !== undefined) return { format: "docker", images: await readDockerImages(archive, manifest, shown) };
  if ((await archive.resolve("oci-layout")) !== undefined) {
    const images = await readLayoutImages(archive.dir, shown, platform);
    const result: ArchiveImage[] = [];
    for (const image of images) {
      const layers = await verifyLayers(image.layers, image.config, archive, shown);
      result.push({ tags: image.tags, config: image.config, configBytes: image.configBytes, configDigest: image.configDigest, layers });
    }
    return { format: "oci", images: result };
  }
  if ((await archive.resolve("repositories")) !== undefined) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${shown} is an archive from docker before 1.10 (it has no manifest.json), which is not supported`, {
      hint: "load it into a newer docker and save it again",
    });
  }
  throw new ExporterError("ERR_IMAGE_ARCHIVE", `${shown} is neither a docker-save archive (no manifest.json) nor an OCI archive (no oci-layout)`, {
    hint: "give a file written by docker save, tsbuild save, or an OCI exporter",
  });
}

async function readDockerImages(archive: UnpackedArchive, manifestPath: string, shown: string): Promise<ArchiveImage[]> {
  const entries = parseDockerManifest(await readFile(manifestPath), shown);
  const images: ArchiveImage[] = [];
  for (const [number, entry] of entries.entries()) {
    const where = `${shown}: manifest.json image ${number + 1}`;
    const configPath = await archive.resolve(entry.Config);
    if (configPath === undefined) {
      throw new ExporterError("ERR_IMAGE_ARCHIVE", `${where} names config ${JSON.stringify(entry.Config)}, which the archive does not hold`, {
        hint: "the archive is incomplete: save the image again",
      });
    }
    const configBytes = await readFile(configPath);
    const configDigest = sha256Digest(configBytes);
    checkNamedDigest(entry.Config, configDigest, `${where}: config ${JSON.stringify(entry.Config)}`);
    const config = parseConfig(configBytes, `${where}: config ${entry.Config}`);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== entry.Layers.length) {
      throw new ExporterError("ERR_IMAGE_ARCHIVE", `${where} lists ${entry.Layers.length} layers, but its config has ${diffIds.length} diff ids`);
    }
    const blobs = [];
    for (const name of entry.Layers) {
      const path = await archive.resolve(name);
      if (path === undefined) {
        throw new ExporterError("ERR_IMAGE_ARCHIVE", `${where} names layer ${JSON.stringify(name)}, which the archive does not hold`, {
          hint: "the archive is incomplete: save the image again",
        });
      }
      blobs.push({ path, name });
    }
    const layers = await verifyLayers(blobs, config, archive, shown);
    images.push({ tags: [...(entry.RepoTags ?? [])], config, configBytes, configDigest, layers });
  }
  return images;
}

function parseDockerManifest(data: Buffer, shown: string): DockerManifestEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(data.toString("utf8"));
  } catch (error) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${shown}: manifest.json is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const isStrings = (list: unknown): list is string[] => Array.isArray(list) && list.every((item) => typeof item === "string");
  const valid =
    Array.isArray(value) &&
    value.every((entry: Partial<DockerManifestEntry> | null) => {
      if (typeof entry !== "object" || entry === null) return false;
      return typeof entry.Config === "string" && isStrings(entry.Layers) && (entry.RepoTags === undefined || entry.RepoTags === null || isStrings(entry.RepoTags));
    });
  if (!valid) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${shown}: manifest.json is not a docker-save manifest (a list of {Config, RepoTags, Layers})`);
  }
  return value as DockerManifestEntry[];
}

function parseConfig(data: Buffer, where: string): ImageConfig & { rootfs: { diff_ids: string[] } } {
  let config: ImageConfig;
  try {
    config = JSON.parse(data.toString("utf8")) as ImageConfig;
  } catch (error) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${where} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const diffIds = (config as Partial<ImageConfig> | null)?.rootfs?.diff_ids;
  if (typeof config !== "object" || config === null || !Array.isArray(diffIds) || !diffIds.every(isDigest)) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${where} is not an image config (rootfs.diff_ids must list sha256 digests)`);
  }
  return config as ImageConfig & { rootfs: { diff_ids: string[] } };
}

/** A name that carries a sha256 ("blobs/sha256/<hex>", "<hex>.json") must name content with that digest. */
function checkNamedDigest(name: string, digest: string, what: string): void {
  const match = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(name);
  if (match && `sha256:${match[1]}` !== digest) {
    throw new ExporterError("ERR_DIGEST_MISMATCH", `${what} has digest ${digest}, not the one its name says: the archive is corrupt`);
  }
}

/**
 * Reads each layer once: the stored bytes' sha256 (checked against a digest the manifest or
 * the name gives) and, decompressed, the tar's, which must be the config's diffId.
 */
async function verifyLayers(
  blobs: readonly { path: string; name?: string; digest?: string; mediaType?: string }[],
  config: ImageConfig,
  archive: UnpackedArchive,
  shown: string,
): Promise<ArchiveLayer[]> {
  const done = new Map<string, Promise<{ digest: string; diffId: string; size: number; compression: LayerCompression }>>();
  const read = (path: string) => {
    let result = done.get(path);
    if (!result) {
      result = verifyLimit(() => hashLayer(path, archive.digestOf(path), shown));
      done.set(path, result);
    }
    return result;
  };
  return Promise.all(
    blobs.map(async (blob, i) => {
      const what = `${shown}: layer ${i + 1} (${blob.name ?? blob.digest ?? blob.path})`;
      const hashed = await read(blob.path);
      const expected = config.rootfs.diff_ids[i] as string;
      if (blob.digest !== undefined && blob.digest !== hashed.digest) {
        throw new ExporterError("ERR_DIGEST_MISMATCH", `${what} has digest ${hashed.digest}, but the manifest says ${blob.digest}: the archive is corrupt`);
      }
      if (blob.name !== undefined) checkNamedDigest(blob.name, hashed.digest, what);
      if (hashed.diffId !== expected) {
        throw new ExporterError(
          "ERR_DIGEST_MISMATCH",
          `${what} decompresses to ${hashed.diffId}, but the config's diff id is ${expected}: the archive is corrupt or its layers do not belong to this config`,
          { hint: "save the image again" },
        );
      }
      return { path: blob.path, mediaType: blob.mediaType ?? layerMediaType(hashed.compression), digest: hashed.digest, diffId: hashed.diffId, size: hashed.size };
    }),
  );
}

async function hashLayer(path: string, known: string | undefined, shown: string): Promise<{ digest: string; diffId: string; size: number; compression: LayerCompression }> {
  const compression = await sniffCompression(path);
  // A plain tar hashed while unpacked (docker save's layers): its digest is its diffId.
  if (compression === "uncompressed" && known !== undefined) return { digest: known, diffId: known, size: (await stat(path)).size, compression };
  const decompressor = await createDecompressor(compression);
  const stored = new HashTap();
  const tar = decompressor ? new HashTap() : stored;
  const input = createReadStream(path, { highWaterMark: 64 * 1024 });
  try {
    if (decompressor) await pipeline(input, stored, decompressor as Transform, tar, discard());
    else await pipeline(input, stored, discard());
  } catch (error) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${shown}: layer ${path} cannot be read as ${compression === "uncompressed" ? "a tar" : compression}: ${(error as Error).message}`, {
      cause: error,
      hint: "the archive is corrupt: save the image again",
    });
  }
  const digest = stored.digest();
  return { digest, diffId: tar === stored ? digest : tar.digest(), size: stored.bytes, compression };
}

/** A path named inside an unpacked archive directory: relative, inside it, a regular file. */
async function resolveInDir(dir: string, name: string): Promise<string | undefined> {
  const split = splitLayerPath(name);
  if ("unsafe" in split) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${dir}: ${JSON.stringify(name)} leaves the archive directory (${split.unsafe}); the archive is malformed or malicious`);
  }
  const path = join(dir, ...split.parts);
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) return undefined;
  // docker save links shared layers (<id>/layer.tar -> ../<other>/layer.tar): follow them, but not out of the directory.
  const [real, root] = await Promise.all([realpath(path), realpath(dir)]);
  if (!real.startsWith(root + sep)) {
    throw new ExporterError("ERR_IMAGE_ARCHIVE", `${dir}: ${JSON.stringify(name)} is a link that leaves the archive directory; the archive is malformed or malicious`);
  }
  return real;
}
