import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { layerCompression, MEDIA_TYPES, writeLayerBlob, type LayerBlob } from "../exporter/index.ts";
import { ensureDir, writeFileAtomic, type LayerInfo, type StateRoot } from "../solver/store/index.ts";

export type Compression = "gzip" | "zstd" | "uncompressed";

export interface LayerBlobOptions {
  compression: Compression;
  level?: number;
  /** Recompress a layer whose only blob has another compression (a pulled base layer); otherwise it is reused as it is. */
  force?: boolean;
  /** Clamps tar mtimes: a layer exported with an epoch is another blob than one without. */
  sourceDateEpoch?: number;
}

/**
 * layer-blobs/<layer id>.json: the blobs a layer was already exported or pulled as, so a
 * layer is compressed once, not at every export, and a base image's layers keep the very
 * blobs its registry served (same digests, so a push skips or mounts them).
 */
interface LayerBlobRecord {
  diffId: string;
  /** Key: compression, plus "@<epoch>" for blobs written with SOURCE_DATE_EPOCH. */
  blobs: Record<string, { digest: string; size: number }>;
}

const OCI_MEDIA_TYPE: Record<Compression, string> = {
  gzip: MEDIA_TYPES.ociLayerGzip,
  zstd: MEDIA_TYPES.ociLayerZstd,
  uncompressed: MEDIA_TYPES.ociLayer,
};

function recordDir(store: StateRoot): string {
  return join(store.dir, "layer-blobs");
}

function recordPath(store: StateRoot, layerId: string): string {
  return join(recordDir(store), `${layerId}.json`);
}

async function readRecord(store: StateRoot, layerId: string): Promise<LayerBlobRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(recordPath(store, layerId), "utf8")) as LayerBlobRecord;
    return typeof record.diffId === "string" && typeof record.blobs === "object" ? record : undefined;
  } catch {
    return undefined;
  }
}

async function writeRecord(store: StateRoot, layerId: string, record: LayerBlobRecord): Promise<void> {
  await ensureDir(recordDir(store));
  await writeFileAtomic(recordPath(store, layerId), JSON.stringify(record), { tempPath: store.tempPath("layer-blobs"), fsync: false });
  // Lets an image that lists this diffId find the layer directory instead of extracting its blob again.
  await ensureDir(join(recordDir(store), "by-diff-id"));
  await writeFileAtomic(join(recordDir(store), "by-diff-id", record.diffId.replace(/^sha256:/, "")), layerId, { tempPath: store.tempPath("layer-blobs"), fsync: false });
}

/** Remembers the blob a layer came from (pull, load), with its compression. */
export async function recordLayerBlob(store: StateRoot, layerId: string, diffId: string, blob: { digest: string; size: number; mediaType: string }): Promise<void> {
  const compression = layerCompression(blob.mediaType);
  if (compression === undefined) return;
  const record = (await readRecord(store, layerId)) ?? { diffId, blobs: {} };
  if (record.blobs[compression]?.digest === blob.digest) return;
  record.blobs[compression] = { digest: blob.digest, size: blob.size };
  await writeRecord(store, layerId, record);
}

/** The layer id that holds the files of `diffId`, if the store has such a layer. */
export async function layerIdForDiffId(store: StateRoot, diffId: string): Promise<string | undefined> {
  const hex = diffId.replace(/^sha256:/, "");
  if (await store.hasLayer(hex)) return hex;
  const id = await readFile(join(recordDir(store), "by-diff-id", hex), "utf8").catch(() => undefined);
  return id !== undefined && (await store.hasLayer(id)) ? id : undefined;
}

/**
 * The layer as a blob in the content store, compressed as asked: an earlier blob of the
 * same layer is reused when its blob is still there (with the same epoch); without `force`
 * a blob of another compression is reused too, as BuildKit keeps base layers as pulled.
 */
export async function ensureLayerBlob(store: StateRoot, layer: LayerInfo, options: LayerBlobOptions): Promise<LayerBlob> {
  const epochSuffix = options.sourceDateEpoch === undefined ? "" : `@${options.sourceDateEpoch}`;
  const wanted = `${options.compression}${epochSuffix}`;
  const record = await readRecord(store, layer.id);
  if (record !== undefined) {
    const candidates = options.force ? [wanted] : [wanted, ...Object.keys(record.blobs).filter((key) => key !== wanted && !key.includes("@"))];
    for (const key of candidates) {
      const blob = record.blobs[key];
      if (blob === undefined || !(await store.hasBlob(blob.digest))) continue;
      const compression = key.split("@")[0] as Compression;
      return { diffId: record.diffId, digest: blob.digest, size: blob.size, mediaType: OCI_MEDIA_TYPE[compression], path: store.blobPath(blob.digest) };
    }
  }
  const workDir = store.tempPath("layer-blob");
  await ensureDir(workDir);
  const written = await writeLayerBlob(
    { dir: layer.dir, opaqueDirs: layer.opaqueDirs },
    workDir,
    { compression: options.compression, ...(options.level !== undefined ? { level: options.level } : {}), ...(options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {}) } as Parameters<typeof writeLayerBlob>[2],
  );
  // writeLayerBlob hashed the blob as it compressed it.
  const digest = await store.writeBlobFromFile(written.path, written.digest, { verified: true });
  const updated = record ?? { diffId: written.diffId, blobs: {} };
  updated.blobs[wanted] = { digest, size: written.size };
  await writeRecord(store, layer.id, updated);
  return { ...written, path: store.blobPath(digest) };
}
