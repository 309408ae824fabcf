/**
 * The exporter: layer directories (overlayfs upper format) → OCI layer blobs, OCI image
 * layouts and tars, docker-save archives, filesystem exports (local directory, plain tar);
 * and back (reading layouts and archives, extracting layers).
 */
export { writeLayerBlob, type LayerBlob, type LayerSource, type WriteLayerOptions } from "./layer-blob.ts";
export { extractLayer, type ExtractLayerOptions } from "./extract.ts";
export { exportLocal, type ExportLocalOptions } from "./local.ts";
export { exportTar, type ExportTarOptions } from "./tar-export.ts";
export {
  writeOciLayout,
  writeOciTar,
  type ImageIndexInput,
  type ImageInput,
  type ImageLayer,
  type PlatformImageInput,
  type WriteImageOptions,
  type WrittenImage,
  type WrittenImageIndex,
} from "./oci-layout.ts";
export { readOciLayout, type OciLayoutImage, type ReadOciLayoutOptions } from "./oci-read.ts";
export { writeDockerArchive, type DockerArchiveImage, type DockerArchiveOptions, type WrittenDockerArchive } from "./docker-archive.ts";
export { readImageArchive, type ArchiveImage, type ArchiveLayer, type ImageArchive, type ReadImageArchiveOptions } from "./image-archive.ts";
export {
  alignHistory,
  buildImageDocuments,
  buildImageIndex,
  buildImageIndexDocument,
  buildImageManifest,
  canonicalJson,
  tagAnnotations,
  type ContainerConfig,
  type Descriptor,
  type HealthConfig,
  type HistoryEntry,
  type ImageConfig,
  type ImageConfigInput,
  type ImageDocuments,
  type ImageIndexDocument,
  type IndexManifest,
  type ManifestOptions,
  type OciIndex,
  type OciManifest,
  type Platform,
} from "./image.ts";
export { parseAnnotationFlags, type AnnotationMap, type ImageAnnotations } from "./annotations.ts";
export { applySourceDateEpoch, epochTimestamp } from "./epoch.ts";
export { familiarTag, qualifiedTag } from "./reference.ts";
export { normalizePlatform, parsePlatform, platformKey } from "../llb/index.ts";
export { MEDIA_TYPES, layerCompression, type LayerCompression } from "./media-types.ts";
export { ExporterError, UnsafeLayerEntryError, type ExporterErrorCode } from "./errors.ts";
export type { TarDestination } from "./tar-output.ts";
/** Safe tar helpers shared with ADD's archive unpacking. */
export { feedTar } from "./tar-util.ts";
export { parentOf, splitLayerPath } from "./paths.ts";
export { drain, TarEntryWriter, type EntryMeta } from "./tar-entry-writer.ts";
