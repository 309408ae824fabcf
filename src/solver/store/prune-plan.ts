import type { StoredBlob } from "./blob-store.ts";
import type { StoredRecord } from "./cache-index.ts";
import type { StoredLayer } from "./layer-store.ts";

export interface PruneOptions {
  /** Remove every cache record, layer and blob that no live lease protects. */
  all?: boolean;
  /** Remove only what was last used more than this long ago. */
  olderThanMs?: number;
  /** Remove least recently used first, and stop once layers and blobs take at most this many bytes. */
  keepBytes?: number;
}

/** Everything in the root that prune may remove. */
export interface Inventory {
  records: StoredRecord[];
  layers: StoredLayer[];
  blobs: StoredBlob[];
  /** Digests of the blobs that stored image names reach: never removed. */
  imageBlobs: ReadonlySet<string>;
}

export interface PrunePlan {
  records: StoredRecord[];
  layers: StoredLayer[];
  blobs: StoredBlob[];
  /** Bytes of the layers and blobs in the plan. */
  bytes: number;
}

/** File times go through a float of seconds and back: allow for the rounding. */
const TIME_ROUNDING_MS = 1;

/**
 * Decides what prune removes. Nothing last used at or after `protectedSince` (the start
 * of the oldest live lease, or of the prune itself) is ever chosen.
 *
 * - With no option, only dangling layers go: layers no cache record lists (left by
 *   interrupted builds), plus debris that is always removed: record files that are not
 *   valid or list a missing layer, and layer directories without a meta.json.
 * - `all` / `olderThanMs` choose records, layers and blobs by last use; a layer goes only
 *   once no remaining record lists it.
 * - `keepBytes` goes least recently used first and stops at the budget.
 */
export function planPrune(inventory: Inventory, options: PruneOptions, now: number, protectedSince: number): PrunePlan {
  const isProtected = (lastUsedAt: number): boolean => lastUsedAt >= protectedSince - TIME_ROUNDING_MS;
  const olderThan = options.olderThanMs;
  const oldEnough = (lastUsedAt: number): boolean => olderThan === undefined || lastUsedAt < now - olderThan;
  const pruneCache = options.all === true || olderThan !== undefined || options.keepBytes !== undefined;
  const removable = (lastUsedAt: number): boolean => pruneCache && !isProtected(lastUsedAt) && oldEnough(lastUsedAt);
  const removableLayer = (layer: StoredLayer): boolean => !isProtected(layer.lastUsedAt) && (!pruneCache || oldEnough(layer.lastUsedAt));

  const plan: PrunePlan = { records: [], layers: [], blobs: [], bytes: 0 };
  const layers = new Map<string, StoredLayer>();
  for (const layer of inventory.layers) {
    if (layer.meta === undefined) plan.layers.push(layer);
    else layers.set(layer.id, layer);
  }

  const references = new Map<string, number>();
  const liveRecords: StoredRecord[] = [];
  for (const stored of inventory.records) {
    const record = stored.record;
    if (record === undefined || !record.layers.every((id) => layers.has(id))) {
      plan.records.push(stored);
      continue;
    }
    liveRecords.push(stored);
    for (const id of new Set(record.layers)) references.set(id, (references.get(id) ?? 0) + 1);
  }

  const removeLayer = (layer: StoredLayer): void => {
    plan.layers.push(layer);
    plan.bytes += layer.bytes;
    layers.delete(layer.id);
  };
  const removeRecord = (stored: StoredRecord): void => {
    plan.records.push(stored);
    for (const id of new Set(stored.record?.layers ?? [])) {
      const left = (references.get(id) ?? 0) - 1;
      references.set(id, left);
      const layer = layers.get(id);
      if (left === 0 && layer !== undefined && removableLayer(layer)) removeLayer(layer);
    }
  };
  const removeBlob = (blob: StoredBlob): void => {
    plan.blobs.push(blob);
    plan.bytes += blob.size;
  };

  type Unit = { lastUsedAt: number; remove: () => void };
  const units: Unit[] = [];
  for (const stored of liveRecords) {
    if (removable(stored.lastUsedAt)) units.push({ lastUsedAt: stored.lastUsedAt, remove: () => removeRecord(stored) });
  }
  for (const layer of layers.values()) {
    if (!references.has(layer.id) && removableLayer(layer)) units.push({ lastUsedAt: layer.lastUsedAt, remove: () => removeLayer(layer) });
  }
  for (const blob of inventory.blobs) {
    if (inventory.imageBlobs.has(blobDigest(blob.path))) continue;
    if (removable(blob.lastUsedAt)) units.push({ lastUsedAt: blob.lastUsedAt, remove: () => removeBlob(blob) });
  }
  units.sort((a, b) => a.lastUsedAt - b.lastUsedAt);

  const budget = options.keepBytes;
  let total = 0;
  for (const layer of layers.values()) total += layer.bytes;
  for (const blob of inventory.blobs) total += blob.size;
  for (const unit of units) {
    if (budget !== undefined && total - plan.bytes <= budget) break;
    unit.remove();
  }
  return plan;
}

/** content/blobs/<algorithm>/<hex> → "<algorithm>:<hex>". */
function blobDigest(path: string): string {
  const parts = path.split("/");
  return `${parts.at(-2) ?? ""}:${parts.at(-1) ?? ""}`;
}
