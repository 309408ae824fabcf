import { readFile } from "node:fs/promises";
import type { Descriptor, ImageConfig, OciIndex, OciManifest, Platform } from "../exporter/index.ts";
import { formatReference, parseReference } from "../registry/index.ts";
import { isIndexMediaType } from "../exporter/media-types.ts";
import type { ImageRef, StateRoot } from "../solver/store/index.ts";
import { UserError } from "../user-error.ts";
import { formatPlatform as describePlatform, hostPlatform, platformMatches } from "../frontend/index.ts";

/** One platform's image, read from the content store. */
export interface StoredImage {
  manifestDigest: string;
  manifest: OciManifest;
  configDigest: string;
  config: ImageConfig;
}

/** A user's way of naming a stored image: a reference ("app:1", "docker.io/library/alpine"), or an image id (prefix). */
export interface FoundImage {
  ref: ImageRef;
  /** The other names of the same target. */
  aliases: ImageRef[];
  /** Found by an id (prefix), not by a name. */
  byId: boolean;
}

/** The fully qualified name an image is stored under ("app" → "docker.io/library/app:latest"). */
export function storedName(text: string): string {
  return formatReference(parseReference(text));
}

/** How `tsbuild images` shows a name: "app:1", "localhost:5000/x:y". */
export function familiarName(name: string): string {
  return formatReference(parseReference(name), { familiar: true });
}

const ID_PREFIX = /^(sha256:)?[0-9a-f]{4,64}$/;

/**
 * Looks up a stored image by name, as docker does first, else by a prefix of its id (the
 * config digest, as `docker images` shows it) or of its manifest digest. An ambiguous prefix
 * is an error. `byId` tells which way it was found.
 */
export async function findImage(store: StateRoot, text: string): Promise<FoundImage | undefined> {
  const refs = await store.listImageRefs();
  const isId = ID_PREFIX.test(text);
  let name: string | undefined;
  try {
    name = storedName(text);
  } catch (error) {
    if (!isId) throw error;
  }
  const ref = refs.find((candidate) => candidate.name === name);
  if (ref !== undefined) return { ref, aliases: refs.filter((other) => other !== ref && other.target.digest === ref.target.digest), byId: false };
  if (!isId) return undefined;
  const hex = text.replace(/^sha256:/, "");
  const matches = new Map<string, ImageRef[]>();
  for (const candidate of refs) {
    const ids = [candidate.target.digest, await imageId(store, candidate).catch(() => "")];
    if (ids.some((id) => id.replace(/^sha256:/, "").startsWith(hex))) matches.set(candidate.target.digest, [...(matches.get(candidate.target.digest) ?? []), candidate]);
  }
  if (matches.size > 1) throw new UserError(`"${text}" matches ${matches.size} images`, "give more characters of the id, or a name");
  const [group] = matches.values();
  return group !== undefined && group.length > 0 ? { ref: group[0] as ImageRef, aliases: group.slice(1), byId: true } : undefined;
}

/** Like findImage, but a missing image is an error that says what to do. */
export async function requireImage(store: StateRoot, text: string): Promise<FoundImage> {
  const found = await findImage(store, text);
  if (found === undefined) throw new UserError(`no image "${text}" in the local store (${store.dir})`, "see tsbuild images; build it with -t, or tsbuild pull it");
  return found;
}

export async function readJsonBlob<T>(store: StateRoot, digest: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(store.blobPath(digest), "utf8");
  } catch {
    throw new UserError(`the ${what} ${digest} is missing from the content store (${store.dir})`, "pull or build the image again");
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new UserError(`the ${what} ${digest} in the content store is not valid JSON`, "remove the image and pull or build it again");
  }
}

/**
 * The image for `platform` under a stored target: the target itself when it is a manifest,
 * else the index entry that matches (an index's entry may be missing when only one platform
 * was pulled). Without a platform, the only image, or the host's.
 */
export async function readStoredImage(store: StateRoot, target: Descriptor, platform?: Platform): Promise<StoredImage> {
  let manifestDigest = target.digest;
  if (isIndexMediaType(target.mediaType)) {
    const index = await readJsonBlob<OciIndex>(store, target.digest, "image index");
    const entries = index.manifests.filter((entry) => entry.mediaType !== undefined && !isIndexMediaType(entry.mediaType));
    const available = [];
    for (const entry of entries) if (await store.hasBlob(entry.digest)) available.push(entry);
    const chosen =
      platform === undefined
        ? available.length === 1
          ? available[0]
          : available.find((entry) => entry.platform !== undefined && platformMatches(entry.platform, hostPlatform()))
        : available.find((entry) => entry.platform !== undefined && platformMatches(entry.platform, platform));
    if (chosen === undefined) {
      const have = available.map((entry) => (entry.platform ? describePlatform(entry.platform) : "unknown")).join(", ") || "none";
      throw new UserError(`the stored image ${target.digest} has no ${platform ? describePlatform(platform) : "host platform"} image (stored: ${have})`, "pull it for that platform: tsbuild pull --platform OS/ARCH NAME");
    }
    manifestDigest = chosen.digest;
  }
  const manifest = await readJsonBlob<OciManifest>(store, manifestDigest, "image manifest");
  const config = await readJsonBlob<ImageConfig>(store, manifest.config.digest, "image config");
  return { manifestDigest, manifest, configDigest: manifest.config.digest, config };
}

/** The image id `tsbuild images` shows: the config digest of the (host platform's) image. */
export async function imageId(store: StateRoot, ref: ImageRef): Promise<string> {
  if (!isIndexMediaType(ref.target.mediaType)) {
    const manifest = await readJsonBlob<OciManifest>(store, ref.target.digest, "image manifest");
    return manifest.config.digest;
  }
  return ref.target.digest;
}

