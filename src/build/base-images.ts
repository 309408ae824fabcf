import { readFile, stat } from "node:fs/promises";
import { formatPlatform, platformMatches } from "../frontend/index.ts";
import type { Platform } from "../llb/index.ts";
import { layersOfImage, readStoredImage, type StoredImage } from "../images/index.ts";
import { formatReference, parseReference, pullImage, type ImageReference, type RegistryOptions } from "../registry/index.ts";
import type { LoadedSource } from "../solver/sources/index.ts";
import type { StateRoot } from "../solver/store/index.ts";
import { UserError } from "../user-error.ts";
import { MEDIA_TYPES } from "../exporter/index.ts";

export interface BaseImageOptions {
  store: StateRoot;
  registry: RegistryOptions;
  /** --pull: ask the registry even when the image is stored. */
  pull: boolean;
  /** A line for the user (pulls are not build steps yet). */
  note: (line: string) => void;
}

export interface BaseImage {
  /** `docker-image://<reference>@<manifest digest>`: the digest makes the source's cache key. */
  identifier: string;
  image: StoredImage;
}

const SOURCE = /^docker-image:\/\/(.+)@(sha256:[0-9a-f]{64})$/;

/**
 * FROM / COPY --from of an image: the stored image of that name when it is there for the
 * platform (no network, as `docker build` uses local images), else a pull, which also
 * stores it under its name.
 */
export async function resolveRegistryImage(name: string, platform: Platform, options: BaseImageOptions): Promise<BaseImage> {
  const reference = parseReference(name);
  const fullName = formatReference(reference);
  if (!options.pull) {
    const stored = await storedImage(options.store, reference, fullName, platform);
    if (stored !== undefined) return { identifier: `docker-image://${fullName}@${stored.manifestDigest}`, image: stored };
  }
  options.note(`pulling ${fullName} (${formatPlatform(platform)})`);
  const pulled = await pullImage(reference, options.store, { ...options.registry, platform });
  await options.store.putImageRef({
    name: fullName,
    target: { mediaType: pulled.manifestMediaType, digest: pulled.manifestDigest, size: (await manifestSize(options.store, pulled.manifestDigest)) },
    createdAt: new Date().toISOString(),
    origin: "pull",
    repoDigest: pulled.digest,
  });
  const image = { manifestDigest: pulled.manifestDigest, manifest: pulled.manifest, configDigest: pulled.configDigest, config: pulled.config };
  return { identifier: `docker-image://${fullName}@${pulled.manifestDigest}`, image };
}

async function storedImage(store: StateRoot, reference: ImageReference, fullName: string, platform: Platform): Promise<StoredImage | undefined> {
  // A digest names content: if the store has that blob, it is the image, whatever name it came under.
  const ref = await store.getImageRef(fullName);
  const target = ref?.target ?? (reference.digest !== undefined && (await store.hasBlob(reference.digest)) ? await digestTarget(store, reference.digest) : undefined);
  if (target === undefined) return undefined;
  try {
    const image = await readStoredImage(store, target, platform);
    const imagePlatform = { os: image.config.os, architecture: image.config.architecture, ...(image.config.variant ? { variant: image.config.variant } : {}) };
    return platformMatches(imagePlatform, platform) ? image : undefined;
  } catch (error) {
    // A stored name whose blobs are gone (or of another platform) is pulled again.
    if (error instanceof UserError) return undefined;
    throw error;
  }
}

async function digestTarget(store: StateRoot, digest: string): Promise<{ mediaType: string; digest: string; size: number }> {
  const bytes = await readFile(store.blobPath(digest));
  const document = JSON.parse(bytes.toString("utf8")) as { mediaType?: string; manifests?: unknown };
  const mediaType = document.mediaType ?? (Array.isArray(document.manifests) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest);
  return { mediaType, digest, size: bytes.length };
}

async function manifestSize(store: StateRoot, digest: string): Promise<number> {
  return (await stat(store.blobPath(digest))).size;
}

/** Loads a `docker-image://` source: the image's layers, from the store (extracted once per diffId). */
export async function loadImageSource(identifier: string, store: StateRoot): Promise<LoadedSource | undefined> {
  const match = SOURCE.exec(identifier);
  if (!match) return undefined;
  const [, name = "", manifestDigest = ""] = match;
  const image = await readStoredImage(store, { mediaType: MEDIA_TYPES.ociManifest, digest: manifestDigest, size: 0 });
  return { layers: await layersOfImage(store, image, name), cacheKey: manifestDigest };
}
