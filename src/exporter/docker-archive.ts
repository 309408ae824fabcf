import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline as pipelineStreams, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createDecompressor, sniffCompression } from "./compression.ts";
import { HashTap, digestHex, isDigest } from "./digest.ts";
import { ExporterError } from "./errors.ts";
import { buildImageManifest, canonicalJson, tagAnnotations, type Descriptor, type ImageConfigInput, type OciIndex } from "./image.ts";
import { layerMediaType, MEDIA_TYPES } from "./media-types.ts";
import type { ImageLayer } from "./oci-layout.ts";
import { familiarRepository, familiarTag, qualifiedTag } from "./reference.ts";
import { DIR_ENTRY, FILE_ENTRY, writeTarOutput, type TarDestination } from "./tar-output.ts";
import { addTarEntry, discard } from "./tar-util.ts";

export interface DockerArchiveImage {
  /** The config as an object (rootfs filled from the layers), or a config blob's bytes, kept as they are (so the image id is kept). */
  config: ImageConfigInput | Uint8Array;
  /** Bottom first: gzip, zstd or uncompressed blobs. */
  layers: readonly ImageLayer[];
  /** "app:1", "registry:5000/app:1", "docker.io/library/app" (→ app:latest); none for an untagged image. */
  tags: readonly string[];
}

export interface DockerArchiveOptions {
  /** SOURCE_DATE_EPOCH, applied to configs given as objects (see applySourceDateEpoch). */
  sourceDateEpoch?: number;
}

export interface WrittenDockerArchive {
  images: { configDigest: string; manifestDigest: string; repoTags: string[] }[];
}

/** A layer as the archive stores it. */
interface StoredLayer {
  source: ImageLayer;
  digest: string;
  diffId: string;
  size: number;
  mediaType: string;
  /** Decompressed while the archive is written (zstd, which docker load before 23.0 cannot read). */
  decompress?: "zstd";
}

/**
 * Writes images as a `docker save` archive that `docker load` (dockerd 20.10 and later) reads:
 * `manifest.json` ([{Config, RepoTags, Layers}]), `repositories`, and every blob under
 * `blobs/sha256/<hex>`, plus `oci-layout` and `index.json` as Docker 25's save writes them (so
 * the archive is an OCI layout too). Gzip and uncompressed layers are stored as they are
 * (docker load decompresses gzip itself); zstd layers are decompressed into plain tars (digest
 * = diffId). Streamed, deterministic: entries sorted by name, mtime 0, owner root.
 */
export async function writeDockerArchive(
  dest: TarDestination,
  images: readonly DockerArchiveImage[],
  options: DockerArchiveOptions = {},
): Promise<WrittenDockerArchive> {
  const claimed = new Map<string, number>();
  const stored = new Map<string, StoredLayer>();
  const blobs = new Map<string, { layer: StoredLayer } | { data: Buffer }>();
  const manifestJson: { Config: string; RepoTags: string[] | null; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  const indexManifests: Descriptor[] = [];
  const written: WrittenDockerArchive = { images: [] };

  for (const [number, image] of images.entries()) {
    const layers: StoredLayer[] = [];
    for (const layer of image.layers) {
      let entry = stored.get(layer.digest);
      if (!entry) {
        entry = await storedLayer(layer);
        stored.set(layer.digest, entry);
      }
      layers.push(entry);
      blobs.set(digestHex(entry.digest), { layer: entry });
    }
    const docs = buildImageManifest(layers, image.config, options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {});
    blobs.set(digestHex(docs.configDescriptor.digest), { data: docs.configJson });
    blobs.set(digestHex(docs.manifestDescriptor.digest), { data: docs.manifestJson });

    const repoTags: string[] = [];
    for (const tag of image.tags) {
      const familiar = familiarTag(tag);
      if (repoTags.includes(familiar)) continue;
      const other = claimed.get(familiar);
      if (other !== undefined && other !== number) {
        throw new ExporterError("ERR_IMAGE_REFERENCE", `tag ${familiar} is given to two images of the archive (${other + 1} and ${number + 1})`, {
          hint: "give each tag to one image",
        });
      }
      claimed.set(familiar, number);
      repoTags.push(familiar);
      const top = layers.at(-1);
      const tagName = familiar.slice(familiar.lastIndexOf(":") + 1);
      if (top) (repositories[familiarRepository(familiar)] ??= {})[tagName] = digestHex(top.digest);
      indexManifests.push({ ...docs.manifestDescriptor, annotations: tagAnnotations(qualifiedTag(familiar)) });
    }
    if (repoTags.length === 0) indexManifests.push({ ...docs.manifestDescriptor });
    manifestJson.push({
      Config: `blobs/sha256/${digestHex(docs.configDescriptor.digest)}`,
      // docker save writes null for an untagged image.
      RepoTags: repoTags.length > 0 ? repoTags : null,
      Layers: layers.map((layer) => `blobs/sha256/${digestHex(layer.digest)}`),
    });
    written.images.push({ configDigest: docs.configDescriptor.digest, manifestDigest: docs.manifestDescriptor.digest, repoTags });
  }

  const index: OciIndex = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: indexManifests };
  const files: [string, Buffer][] = [
    ["index.json", Buffer.from(canonicalJson(index, "index"))],
    // As docker writes it: compact, fields in its order, a newline at the end.
    ["manifest.json", Buffer.from(JSON.stringify(manifestJson) + "\n")],
    ["oci-layout", Buffer.from(JSON.stringify({ imageLayoutVersion: "1.0.0" }))],
    ["repositories", Buffer.from(canonicalJson(repositories, "map") + "\n")],
  ];
  await writeTarOutput(dest, async (pack) => {
    await addTarEntry(pack, { ...DIR_ENTRY, name: "blobs/" });
    await addTarEntry(pack, { ...DIR_ENTRY, name: "blobs/sha256/" });
    for (const hex of [...blobs.keys()].sort()) {
      const blob = blobs.get(hex) as { layer: StoredLayer } | { data: Buffer };
      const name = `blobs/sha256/${hex}`;
      if ("data" in blob) await addTarEntry(pack, { ...FILE_ENTRY, name }, blob.data);
      else await addTarEntry(pack, { ...FILE_ENTRY, name, size: blob.layer.size }, await layerContent(blob.layer));
    }
    for (const [name, data] of files) await addTarEntry(pack, { ...FILE_ENTRY, name }, data);
  });
  return written;
}

/** How a layer goes into the archive; a zstd one is decompressed once here to learn its size and check its diffId. */
async function storedLayer(layer: ImageLayer): Promise<StoredLayer> {
  for (const field of ["digest", "diffId"] as const) {
    if (!isDigest(layer[field])) {
      throw new ExporterError("ERR_IMAGE_CONFIG", `layer ${layer.path}: ${field} ${JSON.stringify(layer[field])} is not a sha256 digest`);
    }
  }
  const size = await stat(layer.path).then(
    (info) => (info.isFile() ? info.size : -1),
    () => -1,
  );
  if (size < 0) throw new ExporterError("ERR_LAYER_IO", `layer blob ${layer.path} is missing`, { hint: "export the image again" });
  if (size !== layer.size) {
    throw new ExporterError("ERR_DIGEST_MISMATCH", `layer blob ${layer.path} is ${size} bytes but its descriptor says ${layer.size}: the blob changed after it was written`);
  }
  const compression = await sniffCompression(layer.path);
  if (compression !== "zstd") {
    return { source: layer, digest: layer.digest, diffId: layer.diffId, size: layer.size, mediaType: layerMediaType(compression) };
  }
  const tar = new HashTap();
  const decompressor = await createDecompressor("zstd");
  try {
    await pipeline(createReadStream(layer.path, { highWaterMark: 64 * 1024 }), decompressor as Transform, tar, discard());
  } catch (error) {
    throw new ExporterError("ERR_LAYER_BAD_ENTRY", `layer blob ${layer.path} is not readable zstd: ${(error as Error).message}`, { cause: error });
  }
  const diffId = tar.digest();
  if (diffId !== layer.diffId) {
    throw new ExporterError("ERR_DIGEST_MISMATCH", `layer blob ${layer.path} decompresses to ${diffId}, but its diffId is ${layer.diffId}: the blob is corrupt or not this layer's`);
  }
  return { source: layer, digest: diffId, diffId, size: tar.bytes, mediaType: MEDIA_TYPES.ociLayer, decompress: "zstd" };
}

async function layerContent(layer: StoredLayer): Promise<AsyncIterable<Buffer>> {
  const input = createReadStream(layer.source.path, { highWaterMark: 64 * 1024 });
  if (!layer.decompress) return input;
  const decompressor = (await createDecompressor(layer.decompress)) as Transform;
  // pipeline, not pipe: a read error must reach the decompressor, which the tar writer reads.
  return pipelineStreams(input, decompressor, () => undefined);
}
