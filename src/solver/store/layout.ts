import { join } from "node:path";

/** Where everything lives under a state root (docs/state-root.md describes each entry). */
export interface Layout {
  root: string;
  /** Temp files and staging directories, named "<pid>-..." so those of dead processes can be removed. */
  tmp: string;
  /** Content-addressed blobs: blobs/<algorithm>/<hex>. */
  blobs: string;
  /** Cache records: cache/<first two hex chars>/<key>.json. */
  cache: string;
  /** Layers: snapshots/<id>/{fs/,meta.json}. */
  snapshots: string;
  /** What a step last wrote, for linking unchanged files on its next run: reuse/<shard>/<key>.json. */
  reuse: string;
  /** Image names: images/<sha256 of the name>.json. */
  images: string;
  locks: string;
  /** One file per live lease. */
  leases: string;
  /** One file per prune that is deciding what to delete (readers wait while one exists). */
  pruning: string;
  /** A character device 0:0 that whiteouts are hard-linked to. */
  whiteout: string;
  /** Layout version of this root. */
  versionFile: string;
}

export function layoutOf(root: string): Layout {
  const locks = join(root, "locks");
  return {
    root,
    tmp: join(root, "tmp"),
    blobs: join(root, "content", "blobs"),
    cache: join(root, "cache"),
    snapshots: join(root, "snapshots"),
    reuse: join(root, "reuse"),
    images: join(root, "images"),
    locks,
    leases: join(locks, "leases"),
    pruning: join(locks, "pruning"),
    whiteout: join(root, "whiteout"),
    versionFile: join(root, "state-root.json"),
  };
}

/** The directories `StateRoot.open` creates. */
export function layoutDirectories(layout: Layout): string[] {
  return [layout.tmp, join(layout.blobs, "sha256"), layout.cache, layout.snapshots, layout.images, layout.leases, layout.pruning];
}
