import { constants } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { BlobStore } from "./blob-store.ts";
import { CacheIndex, type CacheRecord } from "./cache-index.ts";
import { ensureDir } from "./ensure-dir.ts";
import { FileReuseIndex, type ReusableFiles } from "./file-reuse.ts";
import { ImageRefs, type ImageRef } from "./image-refs.ts";
import { StoreError, describeFsError, errnoCode } from "./errors.ts";
import { LayerStore, type LayerFill, type LayerInfo } from "./layer-store.ts";
import { layoutDirectories, layoutOf, type Layout } from "./layout.ts";
import { LeaseRegistry, type Lease } from "./leases.ts";
import { diskUsage, prune, removeUnreachableBlobs, type DiskUsage, type MaintenanceParts, type PruneResult } from "./maintenance.ts";
import { PruneGate } from "./prune-gate.ts";
import type { PruneOptions } from "./prune-plan.ts";
import { TempArea } from "./temp-area.ts";
import { createWhiteout } from "./whiteout.ts";

/** Bumped when the on-disk layout changes incompatibly. */
const LAYOUT_VERSION = 1;

/**
 * The persistent state of tsbuild under one directory (docs/state-root.md). Any number
 * of processes may use one root at once, and any of them may be killed at any moment:
 * every entry appears by an atomic rename of a complete file or directory from tmp/.
 */
export class StateRoot {
  readonly dir: string;
  private readonly layout: Layout;
  private readonly temp: TempArea;
  private readonly blobs: BlobStore;
  private readonly cache: CacheIndex;
  private readonly layers: LayerStore;
  private readonly images: ImageRefs;
  private readonly reuse: FileReuseIndex;
  private readonly leases: LeaseRegistry;
  private readonly maintenance: MaintenanceParts;

  private constructor(layout: Layout) {
    this.dir = layout.root;
    this.layout = layout;
    this.temp = new TempArea(layout.tmp);
    const gate = new PruneGate(layout.pruning);
    this.blobs = new BlobStore(layout.blobs, this.temp, gate);
    this.layers = new LayerStore(layout.snapshots, this.temp, gate);
    this.cache = new CacheIndex(layout.cache, this.temp, gate, (id) => this.layers.exists(id));
    this.reuse = new FileReuseIndex(layout.reuse, this.temp);
    this.leases = new LeaseRegistry(layout.leases, this.temp);
    this.images = new ImageRefs(layout.images, this.temp, this.blobs);
    this.maintenance = { blobsDir: layout.blobs, blobPath: (digest) => this.blobs.path(digest), temp: this.temp, gate, leases: this.leases, cache: this.cache, layers: this.layers, images: this.images, reuse: this.reuse };
  }

  /** Opens (creating if needed) the root at `dir`, and removes temp entries left by dead processes. */
  static async open(dir: string): Promise<StateRoot> {
    const layout = layoutOf(resolve(dir));
    for (const path of layoutDirectories(layout)) await ensureDir(path, "create the state directory");
    try {
      await access(layout.tmp, constants.W_OK);
    } catch (error) {
      throw describeFsError(error, "write to the state root", layout.root);
    }
    const root = new StateRoot(layout);
    await root.checkLayoutVersion();
    await root.temp.removeStale();
    return root;
  }

  /** A unique path under tmp/ (not created), on the same file system as everything else. */
  tempPath(label: string): string {
    return this.temp.path(label);
  }



  // Blobs

  /** Stores `data`; returns "sha256:<hex>". */
  writeBlob(data: Buffer | string): Promise<string> {
    return this.blobs.write(data);
  }

  /**
   * Stores a file (moved in if under tmp/, else copied) after checking `expectedDigest`; on a
   * mismatch nothing is stored. `verified`: the caller hashed these bytes as it wrote them, so a
   * file under tmp/ is not read again.
   */
  writeBlobFromFile(path: string, expectedDigest?: string, options: { verified?: boolean } = {}): Promise<string> {
    return this.blobs.writeFromFile(path, expectedDigest, options);
  }

  blobPath(digest: string): string {
    return this.blobs.path(digest);
  }

  /** Whether the blob exists; counts as a use (call it before reading blobPath). */
  hasBlob(digest: string): Promise<boolean> {
    return this.blobs.has(digest);
  }

  // Cache index

  /** The record, or undefined on a miss (including a record whose layers are gone). Records a use. */
  getCacheRecord(key: string): Promise<CacheRecord | undefined> {
    return this.cache.get(key);
  }

  /** Writes (or replaces) a record; its layers must exist. */
  putCacheRecord(record: Omit<CacheRecord, "createdAt" | "lastUsedAt">): Promise<void> {
    return this.cache.put(record);
  }

  // Layers

  /** Whether the layer exists; counts as a use. */
  hasLayer(id: string): Promise<boolean> {
    return this.layers.has(id);
  }

  /**
   * Creates a layer: `fill` writes the layer's files into the given empty directory; the
   * layer appears atomically. If it exists already, or another process creates the same
   * id meanwhile, that layer is kept and returned (so `fill` may not run at all).
   */
  createLayer(id: string, fill: LayerFill): Promise<LayerInfo> {
    return this.layers.create(id, fill);
  }

  /** The layer's description; counts as a use. Throws (code ENOLAYER) if it does not exist. */
  layerInfo(id: string): Promise<LayerInfo> {
    return this.layers.info(id);
  }

  /** Creates a whiteout (char device 0:0) at `path`, for use inside `createLayer`'s fill. */
  createWhiteout(path: string): Promise<void> {
    return createWhiteout(path, { template: this.layout.whiteout });
  }

  // Files to link instead of copy when a step runs again

  /** What the step `key` last wrote and the directory of that layer, if it still exists (counts as a use of it). */
  async getReusableFiles(key: string): Promise<{ layer: LayerInfo; files: ReusableFiles["files"] } | undefined> {
    const found = await this.reuse.get(key);
    if (found === undefined) return undefined;
    const layer = await this.layers.info(found.layerId).catch(() => undefined);
    return layer && { layer, files: found.files };
  }

  /** Records what a step wrote into `reusable.layerId` (created already), replacing the step's earlier record. */
  putReusableFiles(key: string, reusable: ReusableFiles): Promise<void> {
    return this.reuse.put(key, reusable);
  }

  // Image names (the local image store)

  getImageRef(name: string): Promise<ImageRef | undefined> {
    return this.images.get(name);
  }

  /** Names an image whose blobs are in the content store; they are kept by prune while a name reaches them. */
  putImageRef(ref: ImageRef): Promise<void> {
    return this.images.put(ref);
  }

  removeImageRef(name: string): Promise<boolean> {
    return this.images.remove(name);
  }

  listImageRefs(): Promise<ImageRef[]> {
    return this.images.list();
  }

  // Maintenance

  du(): Promise<DiskUsage> {
    return diskUsage(this.maintenance);
  }

  /** All blobs that stored names reach (an image's manifests, configs and layers). */
  reachableBlobs(): Promise<Set<string>> {
    return this.images.reachableBlobs();
  }

  /** Removes the blobs among `digests` that no name reaches and no live lease protects (see maintenance.ts). */
  removeUnreachableBlobs(digests: Iterable<string>): Promise<{ removed: string[]; bytes: number }> {
    return removeUnreachableBlobs(this.maintenance, digests);
  }

  /** Removes cache records, layers and blobs (see PruneOptions); never what a live lease protects. */
  prune(options: PruneOptions = {}): Promise<PruneResult> {
    return prune(this.maintenance, options);
  }

  /**
   * Takes a lease: until it is released (or this process exits or dies), prune removes
   * nothing created or used since the lease started. Take it before using the store.
   */
  acquireLease(): Promise<Lease> {
    return this.leases.acquire();
  }

  private async checkLayoutVersion(): Promise<void> {
    const path = this.layout.versionFile;
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw describeFsError(error, "read", path);
      await writeFileAtomic(path, `${JSON.stringify({ layoutVersion: LAYOUT_VERSION })}\n`, {
        tempPath: this.temp.path("state-root"),
        fsync: true,
      });
      return;
    }
    let version: unknown;
    try {
      version = (JSON.parse(text) as { layoutVersion?: unknown }).layoutVersion;
    } catch {
      version = undefined;
    }
    if (typeof version !== "number") {
      throw new StoreError({
        code: "ELAYOUT",
        message: `${path} is not a tsbuild state root description`,
        path,
        hint: `is ${this.dir} the state root of another program? Pick another directory with --root DIR`,
      });
    }
    if (version > LAYOUT_VERSION) {
      throw new StoreError({
        code: "ELAYOUT",
        message: `the state root ${this.dir} was created by a newer tsbuild (layout ${version}; this one reads layout ${LAYOUT_VERSION})`,
        path,
        hint: "upgrade tsbuild, or use another state root with --root DIR",
      });
    }
  }
}
