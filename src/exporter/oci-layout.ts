import { randomUUID } from "node:crypto";
import { constants as fsConstants, createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pipeline as pipelineStreams, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract as createExtract, pack as createPack } from "tar-stream";
import { digestHex, isDigest, sha256Digest } from "./digest.ts";
import { ExporterError } from "./errors.ts";
import {
  buildImageDocuments,
  canonicalJson,
  CONTAINERD_NAME_ANNOTATION,
  entryKey,
  indexEntries,
  REF_NAME_ANNOTATION,
  tagAnnotations,
  type Descriptor,
  type ImageConfig,
  type ImageConfigInput,
  type ImageDocuments,
  type OciIndex,
  type OciManifest,
  type Platform,
} from "./image.ts";
import { isIndexMediaType, isManifestMediaType, MEDIA_TYPES } from "./media-types.ts";
import { addTarEntry, allOrFirstError, feedTar } from "./tar-util.ts";

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
  /**
   * Names recorded in index.json. A bare name ("latest", "v1") becomes the
   * org.opencontainers.image.ref.name; an image reference ("registry.example.com/app:1.2")
   * becomes ref name "1.2" plus io.containerd.image.name, as BuildKit's OCI exporter writes.
   */
  tags: readonly string[];
  /** Manifest annotations. */
  annotations?: Record<string, string>;
}

export interface WrittenImage {
  manifestDigest: string;
  configDigest: string;
}

const OCI_LAYOUT = Buffer.from(JSON.stringify({ imageLayoutVersion: "1.0.0" }));

/**
 * Writes an image into an OCI image layout directory (created if missing). An existing layout
 * is added to: its index.json entries with the same names are replaced, others kept. Blobs are
 * copied (reflinked where the filesystem can); index.json is written last, atomically, so a
 * crash leaves the previous index. Two writers updating one layout at once may lose an entry.
 */
export async function writeOciLayout(dir: string, image: ImageInput): Promise<WrittenImage> {
  const docs = documents(image);
  const blobsDir = join(dir, "blobs", "sha256");
  await mkdir(blobsDir, { recursive: true });
  for (const layer of uniqueLayers(image.layers)) await copyBlob(layer, join(blobsDir, digestHex(layer.digest)));
  await writeBlob(join(blobsDir, digestHex(docs.configDescriptor.digest)), docs.configJson);
  await writeBlob(join(blobsDir, digestHex(docs.manifestDescriptor.digest)), docs.manifestJson);
  await writeAtomic(join(dir, "oci-layout"), OCI_LAYOUT);

  const previous = await readIndexIfAny(join(dir, "index.json"));
  const added = indexEntries(docs.manifestDescriptor, image.tags);
  const replaced = new Set(added.map((entry) => entryKey(entry.annotations)));
  const kept = (previous?.manifests ?? []).filter((entry) => {
    const key = entryKey(entry.annotations);
    // Untagged entries of the same manifest are dropped too, so re-exporting does not pile them up.
    if (key === "") return entry.digest !== docs.manifestDescriptor.digest;
    return !replaced.has(key);
  });
  const index: OciIndex = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [...kept, ...added],
    ...(previous?.annotations ? { annotations: previous.annotations } : {}),
  };
  await writeAtomic(join(dir, "index.json"), Buffer.from(canonicalJson(index, "index")));
  return { manifestDigest: docs.manifestDescriptor.digest, configDigest: docs.configDescriptor.digest };
}

/**
 * Writes the image as an OCI layout packed in a tar (what `docker buildx build -o
 * type=oci,dest=x.tar` produces): `oci-layout` and `index.json` first, then the blobs.
 * Deterministic: entries have mtime 0 and owner root. Written to a temporary file, then renamed.
 */
export async function writeOciTar(file: string, image: ImageInput): Promise<WrittenImage> {
  const docs = documents(image);
  const index: OciIndex = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: indexEntries(docs.manifestDescriptor, image.tags) };
  const layers = uniqueLayers(image.layers);
  for (const layer of layers) await checkBlobSize(layer);

  await mkdir(dirname(file), { recursive: true });
  const tmp = join(dirname(file), `.${randomUUID()}.tmp`);
  const pack = createPack();
  const producing = (async () => {
    const meta = { mode: 0o644, uid: 0, gid: 0, mtime: new Date(0) };
    const dirMeta = { ...meta, mode: 0o755, type: "directory" as const };
    await addTarEntry(pack, { ...meta, name: "oci-layout", type: "file" }, OCI_LAYOUT);
    await addTarEntry(pack, { ...meta, name: "index.json", type: "file" }, Buffer.from(canonicalJson(index, "index")));
    await addTarEntry(pack, { ...dirMeta, name: "blobs/" });
    await addTarEntry(pack, { ...dirMeta, name: "blobs/sha256/" });
    for (const layer of layers) {
      const name = `blobs/sha256/${digestHex(layer.digest)}`;
      await addTarEntry(pack, { ...meta, name, type: "file", size: layer.size }, createReadStream(layer.path, { highWaterMark: 64 * 1024 }));
    }
    for (const [digest, data] of [
      [docs.configDescriptor.digest, docs.configJson],
      [docs.manifestDescriptor.digest, docs.manifestJson],
    ] as const) {
      if (layers.some((layer) => layer.digest === digest)) continue;
      await addTarEntry(pack, { ...meta, name: `blobs/sha256/${digestHex(digest)}`, type: "file" }, data);
    }
    pack.finalize();
  })().catch((error: unknown) => {
    pack.destroy(error as Error);
    throw error;
  });
  try {
    await allOrFirstError([producing, pipeline(Readable.from(pack, { objectMode: false }), createWriteStream(tmp))]);
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  return { manifestDigest: docs.manifestDescriptor.digest, configDigest: docs.configDescriptor.digest };
}

function documents(image: ImageInput): ImageDocuments {
  for (const layer of image.layers) {
    for (const field of ["digest", "diffId"] as const) {
      if (!isDigest(layer[field])) {
        throw new ExporterError("ERR_IMAGE_CONFIG", `layer ${layer.path}: ${field} ${JSON.stringify(layer[field])} is not a sha256 digest`);
      }
    }
  }
  return buildImageDocuments(image.layers, image.config, image.annotations, sha256Digest);
}

function uniqueLayers(layers: readonly ImageLayer[]): ImageLayer[] {
  const seen = new Set<string>();
  return layers.filter((layer) => !seen.has(layer.digest) && seen.add(layer.digest) !== undefined);
}

async function checkBlobSize(layer: ImageLayer): Promise<void> {
  const size = (await stat(layer.path)).size;
  if (size !== layer.size) {
    throw new ExporterError(
      "ERR_DIGEST_MISMATCH",
      `layer blob ${layer.path} is ${size} bytes but its descriptor says ${layer.size}: the blob changed after it was written`,
    );
  }
}

async function copyBlob(layer: ImageLayer, target: string): Promise<void> {
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

async function readIndexIfAny(path: string): Promise<OciIndex | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return parseIndex(text, path);
}

function parseIndex(text: string, where: string): OciIndex {
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch (error) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${where} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const manifests = (index as { manifests?: unknown }).manifests;
  if (typeof index !== "object" || index === null || !Array.isArray(manifests) || !manifests.every(isDescriptor)) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${where} is not an OCI image index (it needs a manifests list of descriptors)`);
  }
  return index as OciIndex;
}

function isDescriptor(value: unknown): value is Descriptor {
  const d = value as Descriptor;
  return typeof value === "object" && value !== null && typeof d.mediaType === "string" && isDigest(d.digest) && Number.isSafeInteger(d.size);
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface ReadOciLayoutOptions {
  /** Which image of a multi-platform index (default: the only one, else the host's linux platform). */
  platform?: Platform;
  /** Where an OCI tar is unpacked (default: the system temp directory). */
  tmpDir?: string;
}

export interface OciLayoutImage {
  manifest: OciManifest;
  manifestDigest: string;
  config: ImageConfig;
  configDigest: string;
  /** Bottom first; `path` is the blob file, `diffId` from the config. */
  layers: { digest: string; diffId: string; mediaType: string; size: number; path: string }[];
  /** The layout directory the blobs are in (a temporary one for a tar). */
  layoutDir: string;
  /** Removes the temporary directory an OCI tar was unpacked into; nothing for a directory. */
  dispose(): Promise<void>;
}

/**
 * Reads one image from an OCI layout directory or an OCI tar. `tag` is matched against the
 * org.opencontainers.image.ref.name and io.containerd.image.name annotations ("1.2",
 * "registry.example.com/app:1.2"), or is a digest ("sha256:..."); it may be left out when the
 * layout holds one image. Manifest and config digests are verified; layer blobs only by size
 * (pass their digests to extractLayer to verify them while extracting).
 */
export async function readOciLayout(path: string, tag?: string, options: ReadOciLayoutOptions = {}): Promise<OciLayoutImage> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    throw new ExporterError("ERR_OCI_LAYOUT", `OCI layout ${path} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  if (info.isDirectory()) {
    const image = await readLayoutDir(path, tag, options.platform, path);
    return { ...image, layoutDir: path, dispose: async () => {} };
  }
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), "tsbuild-oci-"));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    await unpackOciTar(path, dir);
    const image = await readLayoutDir(dir, tag, options.platform, path);
    return { ...image, layoutDir: dir, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

const LAYOUT_ENTRY = /^(?:\.\/)?(oci-layout|index\.json|blobs\/sha256\/[0-9a-f]{64})$/;

/** Unpacks the parts of an OCI tar that make the layout; anything else in it is skipped. */
async function unpackOciTar(file: string, dir: string): Promise<void> {
  const handle = await open(file, "r");
  const magic = Buffer.alloc(2);
  await handle.read(magic, 0, 2, 0);
  await handle.close();
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  const extract = createExtract();
  const input = createReadStream(file, { highWaterMark: 64 * 1024 });
  // pipeline, not pipe: a read error must reach the gunzip stream (and so the loop below).
  const source = magic[0] === 0x1f && magic[1] === 0x8b ? pipelineStreams(input, createGunzip(), () => undefined) : input;
  const feeding = feedTar(extract, source).catch((error: unknown) => {
    extract.destroy(error as Error);
    throw error;
  });
  let failure: unknown;
  try {
    for await (const entry of extract) {
      const match = LAYOUT_ENTRY.exec(entry.header.name);
      const body = entry as AsyncIterable<Buffer>;
      if (!match?.[1] || (entry.header.type !== "file" && entry.header.type !== "contiguous-file")) {
        for await (const _chunk of body) {
          // not part of the layout
        }
        continue;
      }
      await pipeline(Readable.from(body), createWriteStream(join(dir, match[1])));
    }
  } catch (error) {
    failure = error;
    extract.destroy();
    source.destroy();
  }
  const fed = await feeding.then(() => undefined, (error: unknown) => error);
  const error = failure ?? fed;
  if (error !== undefined) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${file} is not a readable OCI tar: ${(error as Error).message}`, { cause: error });
  }
}

async function readLayoutDir(
  dir: string,
  tag: string | undefined,
  platform: Platform | undefined,
  shown: string,
): Promise<Omit<OciLayoutImage, "layoutDir" | "dispose">> {
  const layoutFile = await readFile(join(dir, "oci-layout"), "utf8").catch(() => undefined);
  if (layoutFile === undefined) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${shown} is not an OCI image layout: it has no oci-layout file`);
  }
  const version = (parseJson(Buffer.from(layoutFile), `${shown}/oci-layout`) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  if (typeof version !== "string" || !version.startsWith("1.")) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${shown}: unsupported imageLayoutVersion ${JSON.stringify(version)} (1.x is supported)`);
  }
  const indexText = await readFile(join(dir, "index.json"), "utf8").catch(() => undefined);
  if (indexText === undefined) throw new ExporterError("ERR_OCI_LAYOUT", `${shown} is not an OCI image layout: it has no index.json`);
  const index = parseIndex(indexText, `${shown}/index.json`);

  let descriptor = selectByTag(index, tag, shown);
  let manifest: OciManifest | undefined;
  for (let depth = 0; manifest === undefined; depth++) {
    if (depth > 4) throw new ExporterError("ERR_OCI_LAYOUT", `${shown}: image indexes nest too deeply`);
    const where = `${shown} blob ${descriptor.digest}`;
    const document = parseJson(await readBlob(dir, descriptor, shown), where) as { mediaType?: string; manifests?: unknown };
    const mediaType = document.mediaType ?? (descriptor.size < 0 ? (Array.isArray(document.manifests) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest) : descriptor.mediaType);
    if (isIndexMediaType(mediaType)) {
      descriptor = selectPlatform(parseIndex(JSON.stringify(document), where), platform, shown);
      continue;
    }
    const candidate = document as OciManifest;
    if (!isManifestMediaType(mediaType) || !isDescriptor(candidate.config) || !Array.isArray(candidate.layers) || !candidate.layers.every(isDescriptor)) {
      throw new ExporterError("ERR_OCI_LAYOUT", `${shown}: ${descriptor.digest} is not an image manifest (media type ${JSON.stringify(mediaType)})`);
    }
    manifest = candidate;
  }
  const config = parseJson(await readBlob(dir, manifest.config, shown), `${shown} config ${manifest.config.digest}`) as ImageConfig;
  const diffIds = config.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) {
    throw new ExporterError(
      "ERR_OCI_LAYOUT",
      `${shown}: the config lists ${Array.isArray(diffIds) ? diffIds.length : "no"} diff ids for ${manifest.layers.length} layers`,
    );
  }
  const layers = [];
  for (const [i, layer] of manifest.layers.entries()) {
    const path = join(dir, "blobs", "sha256", digestHex(layer.digest));
    const size = await stat(path).then((s) => s.size, () => -1);
    if (size !== layer.size) {
      throw new ExporterError(
        "ERR_OCI_LAYOUT",
        size < 0 ? `${shown}: layer blob ${layer.digest} is missing` : `${shown}: layer blob ${layer.digest} is ${size} bytes, the manifest says ${layer.size}`,
      );
    }
    layers.push({ digest: layer.digest, diffId: diffIds[i] as string, mediaType: layer.mediaType, size: layer.size, path });
  }
  return { manifest, manifestDigest: descriptor.digest, config, configDigest: manifest.config.digest, layers };
}

function parseJson(data: Buffer, where: string): unknown {
  try {
    const value: unknown = JSON.parse(data.toString("utf8"));
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  } catch (error) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${where} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  throw new ExporterError("ERR_OCI_LAYOUT", `${where} is not a JSON object`);
}

async function readBlob(dir: string, descriptor: Descriptor, shown: string): Promise<Buffer> {
  if (!isDigest(descriptor.digest)) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${shown}: unsupported digest ${JSON.stringify(descriptor.digest)} (only sha256 is supported)`);
  }
  const data = await readFile(join(dir, "blobs", "sha256", digestHex(descriptor.digest))).catch(() => undefined);
  if (data === undefined) throw new ExporterError("ERR_OCI_LAYOUT", `${shown}: blob ${descriptor.digest} is missing`);
  // A size of -1: the blob was named by digest alone.
  if (sha256Digest(data) !== descriptor.digest || (descriptor.size >= 0 && data.length !== descriptor.size)) {
    throw new ExporterError("ERR_DIGEST_MISMATCH", `${shown}: blob ${descriptor.digest} does not match its digest or size: the layout is corrupt`);
  }
  return data;
}

function selectByTag(index: OciIndex, tag: string | undefined, shown: string): Descriptor {
  const names = () =>
    index.manifests.map((entry) => entry.annotations?.[CONTAINERD_NAME_ANNOTATION] ?? entry.annotations?.[REF_NAME_ANNOTATION] ?? entry.digest).join(", ");
  if (tag === undefined) {
    const digests = new Set(index.manifests.map((entry) => entry.digest));
    const first = index.manifests[0];
    if (digests.size === 1 && first) return first;
    throw new ExporterError(
      "ERR_OCI_LAYOUT",
      index.manifests.length === 0 ? `${shown} holds no images` : `${shown} holds several images (${names()}): name one with a tag`,
    );
  }
  const bare = tag.startsWith("@") ? tag.slice(1) : tag;
  if (isDigest(bare)) {
    const entry = index.manifests.find((m) => m.digest === bare);
    // A digest not listed in index.json may still be a blob of the layout (a platform's manifest).
    return entry ?? { mediaType: MEDIA_TYPES.ociManifest, digest: bare, size: -1 };
  }
  let wanted: Record<string, string> | undefined;
  try {
    wanted = tagAnnotations(tag);
  } catch {
    wanted = undefined;
  }
  const matches = index.manifests.filter((entry) => {
    const ref = entry.annotations?.[REF_NAME_ANNOTATION];
    const name = entry.annotations?.[CONTAINERD_NAME_ANNOTATION];
    return ref === tag || name === tag || (wanted?.[CONTAINERD_NAME_ANNOTATION] !== undefined && name === wanted[CONTAINERD_NAME_ANNOTATION]);
  });
  const digests = new Set(matches.map((entry) => entry.digest));
  const match = matches[0];
  if (match && digests.size === 1) return match;
  if (digests.size > 1) throw new ExporterError("ERR_OCI_LAYOUT", `${shown}: tag ${JSON.stringify(tag)} names several different images`);
  throw new ExporterError("ERR_OCI_LAYOUT", `${shown} has no image tagged ${JSON.stringify(tag)} (it has: ${names() || "nothing"})`);
}

const HOST_ARCH: Record<string, { architecture: string; variant?: string }> = {
  x64: { architecture: "amd64" },
  arm64: { architecture: "arm64" },
  arm: { architecture: "arm", variant: "v7" },
  ia32: { architecture: "386" },
  ppc64: { architecture: "ppc64le" },
  s390x: { architecture: "s390x" },
  riscv64: { architecture: "riscv64" },
  loong64: { architecture: "loong64" },
  mips64el: { architecture: "mips64le" },
};

function selectPlatform(index: OciIndex, platform: Platform | undefined, shown: string): Descriptor {
  // Attestation manifests (BuildKit's provenance) are listed with platform unknown/unknown.
  const images = index.manifests.filter((entry) => entry.platform?.os !== "unknown");
  const only = images[0];
  if (platform === undefined && images.length === 1 && only) return only;
  const host = HOST_ARCH[process.arch] ?? { architecture: process.arch };
  const want: Platform = platform ?? { os: "linux", ...host };
  const match = images.find(
    (entry) =>
      entry.platform?.os === want.os &&
      entry.platform.architecture === want.architecture &&
      (want.variant === undefined || entry.platform.variant === undefined || entry.platform.variant === want.variant),
  );
  if (match) return match;
  const available = images.map((entry) => (entry.platform ? platformString(entry.platform) : entry.digest)).join(", ");
  throw new ExporterError("ERR_OCI_LAYOUT", `${shown} has no image for ${platformString(want)} (it has: ${available || "nothing"})`);
}

function platformString(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join("/");
}
