/**
 * The local image store: names → manifests in the content store, reading stored images,
 * the layer directories of an image, layer blobs kept per layer, and loading archives.
 */
export { familiarName, findImage, imageId, readJsonBlob, readStoredImage, requireImage, storedName, type FoundImage, type StoredImage } from "./image-store.ts";
export { layersOfImage } from "./image-layers.ts";
export { ensureLayerBlob, layerIdForDiffId, recordLayerBlob, type Compression, type LayerBlobOptions } from "./layer-blobs.ts";
export { commitImage } from "./commit-image.ts";
export { loadArchiveImage, type ArchiveImage } from "./load-image.ts";
