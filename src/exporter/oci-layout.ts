import { randomUUID } from "node:crypto";
import { constants as fsConstants, createReadStream } from "node:fs";
import { copyFile, mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkAnnotations, platformAnnotations, type ImageAnnotations } from "./annotations.ts";
import { digestHex, isDigest } from "./digest.ts";
import { checkEpoch, epochTimestamp } from "./epoch.ts";
import { ExporterError } from "./errors.ts";
import {
  buildImageIndexDocument,
  buildImageManifest,
  canonicalJson,
  entryKey,
  indexEntries,
  type Descriptor,
  type ImageConfigInput,
  type ImageDocuments,
  type OciIndex,
  type Platform,
} from "./image.ts";
import { MEDIA_TYPES } from "./media-types.ts";
import { readIndexIfAny } from "./oci-read.ts";
import { configPlatform } from "../llb/index.ts";
import { DIR_ENTRY, FILE_ENTRY, writeTarOutput, type TarDestination } from "./tar-output.ts";
import { addTarEntry } from "./tar-util.ts";

/** A layer blob on disk and what the manifest and config say about it. */
export interface ImageLayer {
  diffId: string;
  digest: string;
  size: number;
  mediaType: string;
  /** The blob file. */
  path: string;
}

export interface ImageInput {
  /** Bottom first. */
  layers: readonly ImageLayer[];
  /** rootfs may be left out: it is filled from the layers' diffIds. */
  config: ImageConfigInput;
  /** The config blob as stored (`config` is its parse): written as it is, so the image keeps its id. No epoch applies to it. */
  configBytes?: Uint8Array;
  /**
   * Names recorded in index.json. A bare name ("latest", "v1") becomes the
   * org.opencontainers.image.ref.name; an image reference ("registry.example.com/app:1.2")
   * becomes ref name "1.2" plus io.containerd.image.name, as BuildKit's OCI exporter writes.
   */
  tags: readonly string[];
  /** Manifest annotations (merged under the options' manifest annotations). */
  annotations?: Record<string, string>;
}

/** One platform's image of a multi-platform image. */
export interface PlatformImageInput {
  /** Bottom first. */
  layers: readonly ImageLayer[];
  config: ImageConfigInput;
  /** Default: the config's os, architecture and variant. */
  platform?: Platform;
}

/** A multi-platform image: one image per platform under the same tags, written as an OCI image index. */
export interface ImageIndexInput {
  /** In the order the index lists them; one per platform. */
  images: readonly PlatformImageInput[];
  tags: readonly string[];
}

export interface WriteImageOptions {
  /** BuildKit's annotation types (see ImageAnnotations); index ones need an ImageIndexInput. */
  annotations?: ImageAnnotations;
  /**
   * SOURCE_DATE_EPOCH: the configs' and their history's `created` times are clamped to it
   * (applySourceDateEpoch), and index.json entries get org.opencontainers.image.created.
   */
  sourceDateEpoch?: number;
}

export interface WrittenImage {
  manifestDigest: string;
  configDigest: string;
  platform?: Platform;
}

export interface WrittenImageIndex {
  indexDigest: string;
  /** One per platform, in the order given. */
  images: (WrittenImage & { platform: Platform })[];
}

const OCI_LAYOUT = Buffer.from(JSON.stringify({ imageLayoutVersion: "1.0.0" }));
const CREATED_ANNOTATION = "org.opencontainers.image.created";

/** What a write puts in a layout: blobs (files or bytes, each once) and the descriptor index.json points at. */
interface Prepared {
  blobs: ({ digest: string; size: number; path: string } | { digest: string; size: number; data: Buffer })[];
  top: Descriptor;
  tags: readonly string[];
  written: WrittenImage | WrittenImageIndex;
}

/**
 * Writes an image into an OCI image layout directory (created if missing). An existing layout
 * is added to: its index.json entries with the same names are replaced, others kept. Blobs are
 * copied (reflinked where the filesystem can); index.json is written last, atomically, so a
 * crash leaves the previous index. Two writers updating one layout at once may lose an entry.
 * Given an ImageIndexInput, writes each platform's image plus an image index, and tags that.
 */
export async function writeOciLayout(dir: string, image: ImageInput, options?: WriteImageOptions): Promise<WrittenImage>;
export async function writeOciLayout(dir: string, image: ImageIndexInput, options?: WriteImageOptions): Promise<WrittenImageIndex>;
export async function writeOciLayout(dir: string, image: ImageInput | ImageIndexInput, options: WriteImageOptions = {}): Promise<WrittenImage | WrittenImageIndex> {
  const prepared = prepare(image, options);
  const blobsDir = join(dir, "blobs", "sha256");
  await mkdir(blobsDir, { recursive: true });
  for (const blob of prepared.blobs) {
    const target = join(blobsDir, digestHex(blob.digest));
    if ("path" in blob) await copyBlob(blob, target);
    else await writeBlob(target, blob.data);
  }
  await writeAtomic(join(dir, "oci-layout"), OCI_LAYOUT);

  const previous = await readIndexIfAny(join(dir, "index.json"));
  const added = indexEntries(prepared.top, prepared.tags);
  const replaced = new Set(added.map((entry) => entryKey(entry.annotations)));
  const kept = (previous?.manifests ?? []).filter((entry) => {
    const key = entryKey(entry.annotations);
    // Untagged entries of the same image are dropped too, so re-exporting does not pile them up.
    if (key === "") return entry.digest !== prepared.top.digest;
    return !replaced.has(key);
  });
  const index: OciIndex = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [...kept, ...added],
    ...(previous?.annotations ? { annotations: previous.annotations } : {}),
  };
  await writeAtomic(join(dir, "index.json"), Buffer.from(canonicalJson(index, "index")));
  return prepared.written;
}

/**
 * Writes the image as an OCI layout packed in a tar (what `docker buildx build -o
 * type=oci,dest=x.tar` produces): `oci-layout` and `index.json` first, then the blobs (each
 * image's layers, config and manifest, then the index). Deterministic: entries have mtime 0
 * and owner root. A file is written to a temporary file, then renamed; a stream is ended.
 */
export async function writeOciTar(dest: TarDestination, image: ImageInput, options?: WriteImageOptions): Promise<WrittenImage>;
export async function writeOciTar(dest: TarDestination, image: ImageIndexInput, options?: WriteImageOptions): Promise<WrittenImageIndex>;
export async function writeOciTar(dest: TarDestination, image: ImageInput | ImageIndexInput, options: WriteImageOptions = {}): Promise<WrittenImage | WrittenImageIndex> {
  const prepared = prepare(image, options);
  const index: OciIndex = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: indexEntries(prepared.top, prepared.tags) };
  for (const blob of prepared.blobs) if ("path" in blob) await checkBlobSize(blob);
  await writeTarOutput(dest, async (pack) => {
    await addTarEntry(pack, { ...FILE_ENTRY, name: "oci-layout" }, OCI_LAYOUT);
    await addTarEntry(pack, { ...FILE_ENTRY, name: "index.json" }, Buffer.from(canonicalJson(index, "index")));
    await addTarEntry(pack, { ...DIR_ENTRY, name: "blobs/" });
    await addTarEntry(pack, { ...DIR_ENTRY, name: "blobs/sha256/" });
    for (const blob of prepared.blobs) {
      const name = `blobs/sha256/${digestHex(blob.digest)}`;
      if ("data" in blob) await addTarEntry(pack, { ...FILE_ENTRY, name }, blob.data);
      else await addTarEntry(pack, { ...FILE_ENTRY, name, size: blob.size }, createReadStream(blob.path, { highWaterMark: 64 * 1024 }));
    }
  });
  return prepared.written;
}

/** The documents of a single- or multi-platform image, and the blobs to store, in a fixed order. */
function prepare(image: ImageInput | ImageIndexInput, options: WriteImageOptions): Prepared {
  if (options.sourceDateEpoch !== undefined) checkEpoch(options.sourceDateEpoch);
  const epoch = options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {};
  const blobs: Prepared["blobs"] = [];
  const seen = new Set<string>();
  const add = (blob: Prepared["blobs"][number]) => {
    if (seen.has(blob.digest)) return;
    seen.add(blob.digest);
    blobs.push(blob);
  };
  const addImage = (layers: readonly ImageLayer[], docs: ImageDocuments) => {
    for (const layer of layers) add(layer);
    add({ digest: docs.configDescriptor.digest, size: docs.configJson.length, data: docs.configJson });
    add({ digest: docs.manifestDescriptor.digest, size: docs.manifestJson.length, data: docs.manifestJson });
  };
  // With an epoch, index.json says when the image was made, as BuildKit's OCI exporter does.
  const created: Record<string, string> = options.sourceDateEpoch !== undefined ? { [CREATED_ANNOTATION]: epochTimestamp(options.sourceDateEpoch) } : {};

  if (!("images" in image)) {
    checkLayers(image.layers);
    const platform = configPlatform(image.config);
    checkAnnotations(options.annotations, [platform], false);
    const own = platformAnnotations(options.annotations, platform);
    const docs = buildImageManifest(image.layers, image.configBytes ?? image.config, {
      annotations: { ...image.annotations, ...own.manifest },
      descriptorAnnotations: { ...created, ...own.manifestDescriptor },
      ...epoch,
    });
    addImage(image.layers, docs);
    const written = { manifestDigest: docs.manifestDescriptor.digest, configDigest: docs.configDescriptor.digest };
    return { blobs, top: docs.manifestDescriptor, tags: image.tags, written };
  }

  if (image.images.length === 0) throw new ExporterError("ERR_IMAGE_CONFIG", "a multi-platform image needs at least one platform's image");
  const manifests = image.images.map((entry) => {
    checkLayers(entry.layers);
    const platform = entry.platform ?? configPlatform(entry.config);
    const docs = buildImageManifest(entry.layers, entry.config, {
      annotations: platformAnnotations(options.annotations, platform).manifest,
      platform,
      ...epoch,
    });
    addImage(entry.layers, docs);
    return { docs, platform: docs.manifestDescriptor.platform as Platform };
  });
  const index = buildImageIndexDocument(
    manifests.map(({ docs, platform }) => ({ descriptor: docs.manifestDescriptor, platform })),
    options.annotations,
  );
  add({ digest: index.descriptor.digest, size: index.json.length, data: index.json });
  const top: Descriptor = { ...index.descriptor };
  const topAnnotations = { ...created, ...options.annotations?.indexDescriptor };
  if (Object.keys(topAnnotations).length > 0) top.annotations = topAnnotations;
  const written: WrittenImageIndex = {
    indexDigest: index.descriptor.digest,
    images: manifests.map(({ docs, platform }) => ({ manifestDigest: docs.manifestDescriptor.digest, configDigest: docs.configDescriptor.digest, platform })),
  };
  return { blobs, top, tags: image.tags, written };
}

function checkLayers(layers: readonly ImageLayer[]): void {
  for (const layer of layers) {
    for (const field of ["digest", "diffId"] as const) {
      if (!isDigest(layer[field])) {
        throw new ExporterError("ERR_IMAGE_CONFIG", `layer ${layer.path}: ${field} ${JSON.stringify(layer[field])} is not a sha256 digest`);
      }
    }
  }
}

async function checkBlobSize(layer: { path: string; size: number }): Promise<void> {
  const size = await stat(layer.path).then(
    (info) => info.size,
    () => -1,
  );
  if (size < 0) throw new ExporterError("ERR_LAYER_IO", `layer blob ${layer.path} is missing: it was removed after it was written`);
  if (size !== layer.size) {
    throw new ExporterError(
      "ERR_DIGEST_MISMATCH",
      `layer blob ${layer.path} is ${size} bytes but its descriptor says ${layer.size}: the blob changed after it was written`,
    );
  }
}

async function copyBlob(layer: { path: string; size: number }, target: string): Promise<void> {
  await checkBlobSize(layer);
  const existing = await stat(target).catch(() => null);
  if (existing?.isFile() && existing.size === layer.size) return; // content addressed: the same digest is the same bytes
  const tmp = `${target}.${randomUUID()}.tmp`;
  try {
    await copyFile(layer.path, tmp, fsConstants.COPYFILE_FICLONE);
    await rename(tmp, target);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

async function writeBlob(target: string, data: Buffer): Promise<void> {
  const existing = await stat(target).catch(() => null);
  if (existing?.isFile() && existing.size === data.length) return;
  await writeAtomic(target, data);
}

async function writeAtomic(target: string, data: Buffer): Promise<void> {
  const tmp = `${target}.${randomUUID()}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, target);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
