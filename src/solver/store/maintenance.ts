import { rename, rm, stat } from "node:fs/promises";
import { listBlobs } from "./blob-store.ts";
import type { CacheIndex, StoredRecord } from "./cache-index.ts";
import type { FileReuseIndex } from "./file-reuse.ts";
import type { ImageRefs } from "./image-refs.ts";
import { StoreError, describeFsError, errnoCode } from "./errors.ts";
import type { LayerStore } from "./layer-store.ts";
import type { LeaseRegistry } from "./leases.ts";
import type { PruneGate } from "./prune-gate.ts";
import { planPrune, type Inventory, type PruneOptions } from "./prune-plan.ts";
import type { TempArea } from "./temp-area.ts";

export interface DiskUsage {
  layers: { count: number; bytes: number };
  blobs: { count: number; bytes: number };
  cacheRecords: number;
  /** Bytes `prune({ all: true })` would free now. */
  reclaimable: number;
}

export interface PruneResult {
  removedRecords: number;
  removedLayers: number;
  removedBlobs: number;
  /** Bytes of the removed layers and blobs. */
  reclaimedBytes: number;
}

export interface MaintenanceParts {
  blobsDir: string;
  blobPath: (digest: string) => string;
  temp: TempArea;
  gate: PruneGate;
  leases: LeaseRegistry;
  cache: CacheIndex;
  layers: LayerStore;
  images: ImageRefs;
  reuse: FileReuseIndex;
}

async function takeInventory(parts: MaintenanceParts): Promise<Inventory> {
  const [records, layers, blobs, imageBlobs] = await Promise.all([parts.cache.list(), parts.layers.list(), listBlobs(parts.blobsDir), parts.images.reachableBlobs()]);
  return { records, layers, blobs, imageBlobs };
}

/** The oldest moment prune must respect: nothing used since then is removed. */
async function protectedSince(parts: MaintenanceParts, now: number): Promise<number> {
  let since = now;
  for (const lease of await parts.leases.live()) since = Math.min(since, lease.startedAt);
  return since;
}

export async function diskUsage(parts: MaintenanceParts): Promise<DiskUsage> {
  const now = Date.now();
  const since = await protectedSince(parts, now);
  const inventory = await takeInventory(parts);
  const usage: DiskUsage = { layers: { count: 0, bytes: 0 }, blobs: { count: 0, bytes: 0 }, cacheRecords: 0, reclaimable: 0 };
  for (const layer of inventory.layers) {
    if (layer.meta === undefined) continue;
    usage.layers.count++;
    usage.layers.bytes += layer.bytes;
  }
  for (const blob of inventory.blobs) {
    usage.blobs.count++;
    usage.blobs.bytes += blob.size;
  }
  usage.cacheRecords = inventory.records.filter((stored) => stored.record !== undefined).length;
  usage.reclaimable = planPrune(inventory, { all: true }, now, since).bytes;
  return usage;
}

/**
 * Removes what `planPrune` chooses. While deciding, the prune holds a marker (see
 * prune-gate.ts) and moves its victims into tmp/ with one rename each; their contents
 * are deleted after the marker is gone, so readers wait milliseconds, not for the rm.
 * Records go first, so a record never outlives its layers.
 */
export async function prune(parts: MaintenanceParts, options: PruneOptions): Promise<PruneResult> {
  checkOptions(options);
  const result: PruneResult = { removedRecords: 0, removedLayers: 0, removedBlobs: 0, reclaimedBytes: 0 };
  const now = Date.now();
  const claimed: string[] = [];
  const leave = await parts.gate.enter().catch((error: unknown) => {
    throw describeFsError(error, "start a prune in", parts.gate.dir);
  });
  try {
    const since = await protectedSince(parts, now);
    const plan = planPrune(await takeInventory(parts), options, now, since);

    const keptLayers = new Set<string>();
    for (const stored of plan.records) {
      const claim = await claimRecord(parts.temp, stored, since);
      if (claim === "restored") {
        for (const id of stored.record?.layers ?? []) keptLayers.add(id);
        continue;
      }
      if (claim === undefined) continue;
      claimed.push(claim);
      result.removedRecords++;
    }
    for (const layer of plan.layers) {
      if (keptLayers.has(layer.id)) continue;
      const claim = await claimPath(parts.temp, layer.path);
      if (claim === undefined) continue;
      claimed.push(claim);
      result.removedLayers++;
      result.reclaimedBytes += layer.bytes;
    }
    for (const blob of plan.blobs) {
      const claim = await claimPath(parts.temp, blob.path);
      if (claim === undefined) continue;
      claimed.push(claim);
      result.removedBlobs++;
      result.reclaimedBytes += blob.size;
    }
  } finally {
    await leave();
  }
  // If this process dies here, the claimed entries are under our pid in tmp/ and the next open removes them.
  for (const path of claimed) await rm(path, { recursive: true, force: true });
  await parts.reuse.removeDangling((id) => parts.layers.exists(id));
  await parts.temp.removeStale();
  return result;
}

/**
 * Removes the blobs among `digests` that no stored name reaches any more and that nothing
 * used since the oldest live lease started (what `rmi` frees at once; prune would later).
 * Decided under the prune marker, like prune. Returns the digests removed and their bytes.
 */
export async function removeUnreachableBlobs(parts: MaintenanceParts, digests: Iterable<string>): Promise<{ removed: string[]; bytes: number }> {
  const removed: string[] = [];
  let bytes = 0;
  const claimed: string[] = [];
  const leave = await parts.gate.enter().catch((error: unknown) => {
    throw describeFsError(error, "start removing blobs in", parts.gate.dir);
  });
  try {
    const since = await protectedSince(parts, Date.now());
    const reachable = await parts.images.reachableBlobs();
    for (const digest of new Set(digests)) {
      if (reachable.has(digest)) continue;
      const path = parts.blobPath(digest);
      const stats = await stat(path).catch(() => undefined);
      if (stats === undefined || stats.mtimeMs >= since - 1) continue; // gone, or in use by a running build
      const claim = await claimPath(parts.temp, path);
      if (claim === undefined) continue;
      claimed.push(claim);
      removed.push(digest);
      bytes += stats.size;
    }
  } finally {
    await leave();
  }
  for (const path of claimed) await rm(path, { force: true });
  return { removed, bytes };
}

/** Moves an entry into tmp/ (our name); undefined if it was already gone. */
async function claimPath(temp: TempArea, path: string): Promise<string | undefined> {
  const claim = temp.path("pruned");
  try {
    await rename(path, claim);
    return claim;
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw describeFsError(error, "remove", path);
  }
}

/**
 * Claims a record, then looks at the claimed file: if it was rewritten after the
 * decision (a concurrent putCacheRecord), it is put back, and its layers are kept.
 */
async function claimRecord(temp: TempArea, stored: StoredRecord, since: number): Promise<string | "restored" | undefined> {
  const claim = await claimPath(temp, stored.path);
  if (claim === undefined || stored.record === undefined) return claim;
  const rewritten = await stat(claim).then(
    (stats) => stats.mtimeMs > stored.lastUsedAt && stats.mtimeMs >= since,
    () => false,
  );
  if (!rewritten) return claim;
  try {
    await rename(claim, stored.path);
    return "restored";
  } catch {
    return claim;
  }
}

function checkOptions(options: PruneOptions): void {
  for (const name of ["olderThanMs", "keepBytes"] as const) {
    const value = options[name];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new StoreError({ code: "EINVAL", message: `prune: ${name} must be a number >= 0, got ${String(value)}` });
    }
  }
}
