import { access, lstat, readFile, readdir, rename, rm, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { ensureDir } from "./ensure-dir.ts";
import { StoreError, describeFsError, errnoCode } from "./errors.ts";
import { checkLayerId } from "./names.ts";
import { recordUse, type PruneGate } from "./prune-gate.ts";
import type { TempArea } from "./temp-area.ts";
import { treeSize } from "./tree-size.ts";

export interface LayerInfo {
  id: string;
  /** The layer's files (snapshots/<id>/fs), in overlayfs upper-dir format. */
  dir: string;
  /** Bytes of regular files and symlinks in `dir`. */
  size: number;
  /** Absolute image paths ("/var/cache") of directories that hide the contents of lower layers. */
  opaqueDirs: string[];
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** Layers some of whose files this layer hard-links at other paths (COPY --from): an image holding both would show one inode twice. */
  linkedFrom: string[];
}

/** snapshots/<id>/meta.json. Its mtime is the layer's "last used" time. */
interface LayerMeta {
  id: string;
  size: number;
  opaqueDirs: string[];
  createdAt: number;
  /** Absent in layers made before it existed, and when empty. */
  linkedFrom?: string[];
  /** Bytes of the files (counted in `size`) that are hard links to files of `linkedFrom` layers. */
  linkedBytes?: number;
}

/** What `fill` may report about the layer it wrote. */
export interface LayerFillResult {
  opaqueDirs?: string[];
  linkedFrom?: string[];
  linkedBytes?: number;
}

export type LayerFill = (fsDir: string) => Promise<LayerFillResult | void>;

/** A layer found by `list` (for du and prune). `meta` is undefined for debris: a directory without a readable meta.json. */
export interface StoredLayer {
  id: string;
  path: string;
  meta: LayerMeta | undefined;
  lastUsedAt: number;
  /**
   * The disk space the layer holds on its own: `size`, less the files it shares with layers
   * it links from while one of those is still there (those bytes are counted there).
   */
  bytes: number;
}

/**
 * Layers under snapshots/<id>/. A layer is written in a staging directory under tmp/
 * (fs/ plus meta.json) and appears by one rename of that directory, so a layer that
 * exists is always complete, and meta.json is present from its first moment.
 */
export class LayerStore {
  constructor(
    private readonly dir: string,
    private readonly temp: TempArea,
    private readonly gate: PruneGate,
  ) {}

  layerDir(id: string): string {
    return join(this.dir, checkLayerId(id));
  }

  /** Whether the layer exists; counts as a use (protects it from a concurrent prune). */
  async has(id: string): Promise<boolean> {
    return recordUse(join(this.layerDir(id), "meta.json"), this.gate);
  }

  /** Whether the layer exists, without recording a use. */
  async exists(id: string): Promise<boolean> {
    try {
      await access(join(this.layerDir(id), "meta.json"));
      return true;
    } catch {
      return false;
    }
  }

  async info(id: string): Promise<LayerInfo> {
    const info = await this.use(id);
    if (info === undefined) {
      throw new StoreError({
        code: "ENOLAYER",
        message: `layer ${id} does not exist in ${this.dir}`,
        path: this.layerDir(id),
        hint: "it may have been pruned: build again to recreate it",
      });
    }
    return info;
  }

  async create(id: string, fill: LayerFill): Promise<LayerInfo> {
    const target = this.layerDir(id);
    const existing = await this.use(id);
    if (existing !== undefined) return existing;

    const staging = this.temp.path(`layer-${id}`);
    try {
      await this.stage(id, staging, fill);
      if (await this.moveIntoPlace(staging, target)) {
        const created = await this.use(id);
        if (created !== undefined) return created;
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    // Another process created the same layer meanwhile: keep theirs.
    return this.info(id);
  }

  /** Every entry of snapshots/, with its meta.json when readable. */
  async list(): Promise<StoredLayer[]> {
    const layers: StoredLayer[] = [];
    for (const id of await readdir(this.dir)) {
      const path = join(this.dir, id);
      const metaPath = join(path, "meta.json");
      let lastUsedAt = 0;
      let meta: LayerMeta | undefined;
      try {
        lastUsedAt = (await stat(metaPath)).mtimeMs;
        meta = parseMeta(await readFile(metaPath, "utf8"), id);
      } catch (error) {
        if (errnoCode(error) !== "ENOENT" && errnoCode(error) !== "ENOTDIR") throw describeFsError(error, "read", metaPath);
      }
      layers.push({ id, path, meta, lastUsedAt, bytes: 0 });
    }
    const present = new Set(layers.filter((layer) => layer.meta !== undefined).map((layer) => layer.id));
    for (const layer of layers) {
      if (layer.meta === undefined) continue;
      const shared = layer.meta.linkedFrom?.some((id) => present.has(id)) === true ? (layer.meta.linkedBytes ?? 0) : 0;
      layer.bytes = Math.max(0, layer.meta.size - shared);
    }
    return layers;
  }

  private async use(id: string): Promise<LayerInfo | undefined> {
    const dir = this.layerDir(id);
    if (!(await recordUse(join(dir, "meta.json"), this.gate))) return undefined;
    let text: string;
    try {
      text = await readFile(join(dir, "meta.json"), "utf8");
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return undefined; // pruned meanwhile
      throw describeFsError(error, "read", join(dir, "meta.json"));
    }
    const meta = parseMeta(text, id);
    if (meta === undefined) {
      throw new StoreError({
        code: "ELAYOUT",
        message: `${join(dir, "meta.json")} is not a valid layer description`,
        path: dir,
        hint: "the state root was modified by hand: delete that layer directory (tsbuild recreates it)",
      });
    }
    return { id, dir: join(dir, "fs"), size: meta.size, opaqueDirs: meta.opaqueDirs, createdAt: meta.createdAt, linkedFrom: meta.linkedFrom ?? [] };
  }

  private async stage(id: string, staging: string, fill: LayerFill): Promise<void> {
    const fsDir = join(staging, "fs");
    await ensureDir(fsDir);
    let result: LayerFillResult | void;
    try {
      result = await fill(fsDir);
    } catch (error) {
      throw describeFsError(error, `write layer ${id} in`, fsDir);
    }
    const opaqueDirs = await checkOpaqueDirs(fsDir, result?.opaqueDirs ?? []);
    const createdAt = Date.now();
    const linkedFrom = [...new Set(result?.linkedFrom ?? [])].sort();
    const linked = linkedFrom.length > 0 ? { linkedFrom, linkedBytes: result?.linkedBytes ?? 0 } : {};
    const meta: LayerMeta = { id, size: await treeSize(fsDir), opaqueDirs, createdAt, ...linked };
    await writeFileAtomic(join(staging, "meta.json"), JSON.stringify(meta), {
      tempPath: this.temp.path("layer-meta"),
      fsync: false,
      mtime: new Date(createdAt),
    });
  }

  /** Returns false if a complete layer of that id is already in place. */
  private async moveIntoPlace(staging: string, target: string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(staging, target);
        return true;
      } catch (error) {
        const code = errnoCode(error);
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw describeFsError(error, "move a new layer to", target);
      }
      if (await pathExists(join(target, "meta.json"))) return false;
      // A directory without meta.json is debris (tsbuild never makes one: someone deleted by hand). Set it aside once.
      if (attempt > 0) {
        throw new StoreError({
          code: "ELAYOUT",
          message: `cannot create layer ${target}: a directory without meta.json keeps reappearing there`,
          path: target,
          hint: "remove that directory by hand",
        });
      }
      await this.temp.remove(target);
    }
  }
}

function parseMeta(text: string, id: string): LayerMeta | undefined {
  try {
    const meta = JSON.parse(text) as Partial<LayerMeta>;
    if (
      meta.id !== id ||
      typeof meta.size !== "number" ||
      typeof meta.createdAt !== "number" ||
      !Array.isArray(meta.opaqueDirs) ||
      !meta.opaqueDirs.every((dir) => typeof dir === "string") ||
      (meta.linkedFrom !== undefined && !(Array.isArray(meta.linkedFrom) && meta.linkedFrom.every((layer) => typeof layer === "string"))) ||
      (meta.linkedBytes !== undefined && typeof meta.linkedBytes !== "number")
    ) {
      return undefined;
    }
    const linked = meta.linkedFrom ? { linkedFrom: meta.linkedFrom, linkedBytes: meta.linkedBytes ?? 0 } : {};
    return { id, size: meta.size, opaqueDirs: meta.opaqueDirs, createdAt: meta.createdAt, ...linked };
  } catch {
    return undefined;
  }
}

/** Normalizes opaque dirs to "/a/b" and checks that each is a directory of the layer. */
async function checkOpaqueDirs(fsDir: string, dirs: readonly string[]): Promise<string[]> {
  const normalized = new Set<string>();
  for (const dir of dirs) {
    const imagePath = posix.normalize(`/${dir}`).replace(/(.)\/$/, "$1");
    if (imagePath.split("/").includes("..")) throw new StoreError({ code: "EBADNAME", message: `opaque dir ${JSON.stringify(dir)} leaves the layer` });
    const isDirectory = await lstat(join(fsDir, imagePath)).then(
      (stats) => stats.isDirectory(),
      () => false,
    );
    if (!isDirectory) {
      throw new StoreError({
        code: "EBADNAME",
        message: `opaque dir ${imagePath} is not a directory of the new layer (${fsDir})`,
        path: join(fsDir, imagePath),
      });
    }
    normalized.add(imagePath);
  }
  return [...normalized].sort();
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
