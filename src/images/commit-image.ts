import { buildImageManifest, type ImageConfigInput, type ImageDocuments, type LayerBlob, type ManifestOptions } from "../exporter/index.ts";
import type { StateRoot } from "../solver/store/index.ts";

/**
 * Writes an image's config and manifest into the content store (its layer blobs are
 * there already, see ensureLayerBlob): what `-o type=image` names and what a push sends.
 */
export async function commitImage(store: StateRoot, layers: readonly LayerBlob[], config: ImageConfigInput, options: ManifestOptions = {}): Promise<ImageDocuments> {
  const documents = buildImageManifest(layers, config, options);
  await store.writeBlob(documents.configJson);
  await store.writeBlob(documents.manifestJson);
  return documents;
}
