import { buildImageDocuments, type ImageDocuments } from "../exporter/image.ts";
import type { ImageConfigInput, LayerBlob } from "../exporter/index.ts";
import type { StateRoot } from "../solver/store/index.ts";
import { sha256Digest } from "../exporter/digest.ts";

/**
 * Writes an image's config and manifest into the content store (its layer blobs are
 * there already, see ensureLayerBlob): what `-o type=image` names and what a push sends.
 */
export async function commitImage(store: StateRoot, layers: readonly LayerBlob[], config: ImageConfigInput, annotations?: Record<string, string>): Promise<ImageDocuments> {
  const documents = buildImageDocuments(layers, config, annotations, sha256Digest);
  await store.writeBlob(documents.configJson);
  await store.writeBlob(documents.manifestJson);
  return documents;
}
