export { StateRoot } from "./state-root.ts";
export type { CacheRecord } from "./cache-index.ts";
export type { LayerInfo, LayerFill, LayerFillResult } from "./layer-store.ts";
export type { Lease } from "./leases.ts";
export type { DiskUsage, PruneResult } from "./maintenance.ts";
export type { PruneOptions } from "./prune-plan.ts";
export { StoreError } from "./errors.ts";
export { LayeredFS, LayeredFsError, type EntryStat, type LayerView } from "./layered-fs.ts";
export { createWhiteout, isWhiteout } from "./whiteout.ts";
