import { canonicalJson, MEDIA_TYPES, type OciManifest } from "../exporter/index.ts";
import type { StateRoot } from "../solver/store/index.ts";
import { storedName } from "./image-store.ts";

/** One image read from an archive (docker save or OCI): its config as written, and layer blobs on disk. */
export interface ArchiveImage {
  tags: readonly string[];
  configBytes: Buffer;
  layers: readonly { path: string; mediaType: string; digest: string; diffId: string; size: number }[];
}

/**
 * Puts an archive's image into the store: layer blobs (verified against their digests by
 * the archive reader, or by the store for a layout directory's), the config exactly as archived (so the image id stays the same), and an
 * OCI manifest for them; then names it with the archive's tags.
 */
export async function loadArchiveImage(store: StateRoot, image: ArchiveImage): Promise<{ configDigest: string; manifestDigest: string; names: string[] }> {
  for (const layer of image.layers) {
    if (await store.hasBlob(layer.digest)) continue;
    // The archive reader hashed each layer as it unpacked it.
    await store.writeBlobFromFile(layer.path, layer.digest, { verified: true });
  }
  const configDigest = await store.writeBlob(image.configBytes);
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: image.configBytes.length },
    layers: image.layers.map((layer) => ({ mediaType: ociLayerType(layer.mediaType), digest: layer.digest, size: layer.size })),
  };
  const manifestJson = Buffer.from(canonicalJson(manifest, "manifest"));
  const manifestDigest = await store.writeBlob(manifestJson);
  const names = image.tags.map(storedName);
  const createdAt = new Date().toISOString();
  for (const name of names) {
    await store.putImageRef({ name, target: { mediaType: MEDIA_TYPES.ociManifest, digest: manifestDigest, size: manifestJson.length }, createdAt, origin: "load" });
  }
  return { configDigest, manifestDigest, names };
}

/** Docker's layer media types, as their OCI equivalents (the bytes are the same). */
function ociLayerType(mediaType: string): string {
  if (mediaType === MEDIA_TYPES.dockerLayerGzip) return MEDIA_TYPES.ociLayerGzip;
  if (mediaType === "application/vnd.docker.image.rootfs.diff.tar") return MEDIA_TYPES.ociLayer;
  return mediaType;
}
