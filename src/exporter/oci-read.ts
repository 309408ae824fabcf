/** Reading OCI image layouts (directories or tars): index.json → (image index →) manifest → config and layer blobs. */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unpackArchive } from "./archive-unpack.ts";
import { digestHex, isDigest, sha256Digest } from "./digest.ts";
import { ExporterError } from "./errors.ts";
import { CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION, tagAnnotations, type Descriptor, type ImageConfig, type OciIndex, type OciManifest, type Platform } from "./image.ts";
import { isIndexMediaType, isManifestMediaType, MEDIA_TYPES } from "./media-types.ts";

export async function readIndexIfAny(path: string): Promise<OciIndex | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return parseIndex(text, path);
}

export function parseIndex(text: string, where: string): OciIndex {
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch (error) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${where} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const manifests = typeof index === "object" && index !== null ? (index as { manifests?: unknown }).manifests : undefined;
  if (!Array.isArray(manifests) || !manifests.every(isDescriptor)) {
    throw new ExporterError("ERR_OCI_LAYOUT", `${where} is not an OCI image index (it needs a manifests list of descriptors)`);
  }
  return index as OciIndex;
}

export function isDescriptor(value: unknown): value is Descriptor {
  const d = value as Descriptor;
  return typeof value === "object" && value !== null && typeof d.mediaType === "string" && isDigest(d.digest) && Number.isSafeInteger(d.size);
}

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
  /** The config blob as stored (its sha256 is configDigest, the image id). */
  configBytes: Buffer;
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
    const index = await openLayout(path, path);
    const image = await resolveImage(path, selectByTag(index, tag, path), options.platform, path);
    return { ...image, layoutDir: path, dispose: async () => {} };
  }
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), "tsbuild-oci-"));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    await unpackOciTar(path, dir);
    const index = await openLayout(dir, path);
    const image = await resolveImage(dir, selectByTag(index, tag, path), options.platform, path);
    return { ...image, layoutDir: dir, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** Unpacks an OCI tar (plain, gzip or zstd) into `dir`, wording errors as an OCI tar's. */
async function unpackOciTar(file: string, dir: string): Promise<void> {
  try {
    await unpackArchive(file, dir, file, "ERR_OCI_LAYOUT");
  } catch (error) {
    if (error instanceof ExporterError && /is not a readable archive/.test(error.message)) {
      throw new ExporterError("ERR_OCI_LAYOUT", error.message.replace("is not a readable archive", "is not a readable OCI tar"), { cause: error.cause });
    }
    throw error;
  }
}

/** An image of a layout with every tag index.json gives it (full references where recorded, else ref names). */
export interface LayoutImage extends Omit<OciLayoutImage, "layoutDir" | "dispose"> {
  tags: string[];
  refNames: string[];
}

/**
 * Every image index.json lists, once per distinct descriptor (a multi-platform one resolved to
 * `platform`, else the host's linux platform), with the tags that name it.
 */
export async function readLayoutImages(dir: string, shown: string, platform?: Platform): Promise<LayoutImage[]> {
  const index = await openLayout(dir, shown);
  const byDigest = new Map<string, { descriptor: Descriptor; tags: string[]; refNames: string[] }>();
  for (const entry of index.manifests) {
    const group = byDigest.get(entry.digest) ?? { descriptor: entry, tags: [], refNames: [] };
    byDigest.set(entry.digest, group);
    const name = entry.annotations?.[CONTAINERD_NAME_ANNOTATION];
    const ref = entry.annotations?.[REF_NAME_ANNOTATION];
    if (name !== undefined && !group.tags.includes(name)) group.tags.push(name);
    else if (name === undefined && ref !== undefined && /[/:]/.test(ref) && !group.tags.includes(ref)) group.tags.push(ref);
    if (ref !== undefined && !group.refNames.includes(ref)) group.refNames.push(ref);
  }
  const images: LayoutImage[] = [];
  for (const { descriptor, tags, refNames } of byDigest.values()) {
    images.push({ ...(await resolveImage(dir, descriptor, platform, shown)), tags, refNames });
  }
  return images;
}

/** Checks oci-layout and parses index.json. */
async function openLayout(dir: string, shown: string): Promise<OciIndex> {
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
  return parseIndex(indexText, `${shown}/index.json`);
}

/** Follows a descriptor (through image indexes, choosing `platform`) to a manifest, its config and layer blobs. */
async function resolveImage(
  dir: string,
  start: Descriptor,
  platform: Platform | undefined,
  shown: string,
): Promise<Omit<OciLayoutImage, "layoutDir" | "dispose">> {
  let descriptor = start;
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
  const configBytes = await readBlob(dir, manifest.config, shown);
  const config = parseJson(configBytes, `${shown} config ${manifest.config.digest}`) as ImageConfig;
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
  return { manifest, manifestDigest: descriptor.digest, config, configBytes, configDigest: manifest.config.digest, layers };
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
