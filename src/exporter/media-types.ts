/** Media types of OCI (and, for reading, Docker) image documents and layers. */
export const MEDIA_TYPES = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  ociLayerNondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  ociLayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  ociLayerNondistributableZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerForeignGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
} as const;

export type LayerCompression = "gzip" | "zstd" | "uncompressed";

/** The OCI layer media type of a compression. */
export function layerMediaType(compression: LayerCompression): string {
  return compression === "gzip" ? MEDIA_TYPES.ociLayerGzip : compression === "zstd" ? MEDIA_TYPES.ociLayerZstd : MEDIA_TYPES.ociLayer;
}

/** The compression a layer media type declares, or undefined if it is not a layer media type. */
export function layerCompression(mediaType: string): LayerCompression | undefined {
  switch (mediaType) {
    case MEDIA_TYPES.ociLayer:
    case MEDIA_TYPES.ociLayerNondistributable:
      return "uncompressed";
    case MEDIA_TYPES.ociLayerGzip:
    case MEDIA_TYPES.ociLayerNondistributableGzip:
    case MEDIA_TYPES.dockerLayerGzip:
    case MEDIA_TYPES.dockerLayerForeignGzip:
      return "gzip";
    case MEDIA_TYPES.ociLayerZstd:
    case MEDIA_TYPES.ociLayerNondistributableZstd:
      return "zstd";
    default:
      return undefined;
  }
}

export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerManifestList;
}

export function isManifestMediaType(mediaType: string | undefined): boolean {
  return mediaType === MEDIA_TYPES.ociManifest || mediaType === MEDIA_TYPES.dockerManifest;
}
