import { extractLayer } from "../exporter/index.ts";
import type { LayerInfo, StateRoot } from "../solver/store/index.ts";
import { UserError } from "../user-error.ts";
import type { StoredImage } from "./image-store.ts";
import { layerIdForDiffId, recordLayerBlob } from "./layer-blobs.ts";

/**
 * The layer directories of a stored image, bottom first. A layer the store already has
 * (by diffId: pulled before, or built here and exported) is used as it is; any other is
 * extracted from its blob, verified against its digest and diffId, into a layer named by
 * its diffId, so every image sharing it shares one directory.
 */
export async function layersOfImage(store: StateRoot, image: StoredImage, name: string): Promise<LayerInfo[]> {
  const diffIds = image.config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== image.manifest.layers.length) {
    throw new UserError(`image ${name}: its config lists ${diffIds.length} layers, its manifest ${image.manifest.layers.length}`, "the image is malformed; rebuild or pull another one");
  }
  const layers: LayerInfo[] = [];
  for (const [index, blob] of image.manifest.layers.entries()) {
    const diffId = diffIds[index] as string;
    const existing = await layerIdForDiffId(store, diffId);
    if (existing !== undefined) {
      layers.push(await store.layerInfo(existing));
      await recordLayerBlob(store, existing, diffId, blob);
      continue;
    }
    if (!(await store.hasBlob(blob.digest))) {
      throw new UserError(`image ${name}: layer ${blob.digest} is missing from the content store`, `pull the image again: tsbuild pull ${name}`);
    }
    const id = diffId.replace(/^sha256:/, "");
    layers.push(await store.createLayer(id, async (dir) => extractLayer(store.blobPath(blob.digest), blob.mediaType, dir, { digest: blob.digest, diffId })));
    await recordLayerBlob(store, id, diffId, blob);
  }
  return layers;
}
