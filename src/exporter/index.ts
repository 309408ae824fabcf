/**
 * The exporter: layer directories (overlayfs upper format) → OCI layer blobs, OCI image
 * layouts and tars, local filesystem exports; and back (reading layouts, extracting layers).
 */
export { writeLayerBlob, type LayerBlob, type LayerSource, type WriteLayerOptions } from "./layer-blob.ts";
export { extractLayer, type ExtractLayerOptions } from "./extract.ts";
export { exportLocal, type ExportLocalOptions } from "./local.ts";
export {
  readOciLayout,
  writeOciLayout,
  writeOciTar,
  type ImageInput,
  type ImageLayer,
  type OciLayoutImage,
  type ReadOciLayoutOptions,
  type WrittenImage,
} from "./oci-layout.ts";
export {
  alignHistory,
  canonicalJson,
  tagAnnotations,
  type ContainerConfig,
  type Descriptor,
  type HealthConfig,
  type HistoryEntry,
  type ImageConfig,
  type ImageConfigInput,
  type OciIndex,
  type OciManifest,
  type Platform,
} from "./image.ts";
export { MEDIA_TYPES, layerCompression } from "./media-types.ts";
export { ExporterError, UnsafeLayerEntryError, type ExporterErrorCode } from "./errors.ts";
/** Safe tar helpers shared with ADD's archive unpacking. */
export { feedTar } from "./tar-util.ts";
export { parentOf, splitLayerPath } from "./paths.ts";
