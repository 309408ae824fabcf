import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { ensureDir } from "./ensure-dir.ts";
import { listDir } from "./list-dir.ts";
import { StoreError, describeFsError, errnoCode } from "./errors.ts";
import { checkCacheKey, checkLayerId, isValidLayerId, shardOf } from "./names.ts";
import { recordUse, type PruneGate } from "./prune-gate.ts";
import type { TempArea } from "./temp-area.ts";

export interface CacheRecord {
  key: string;
  /** Layer ids, bottom to top. */
  layers: string[];
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** Milliseconds since the epoch; kept in the file's mtime, so a use is one utimes(2), never a rewrite. */
  lastUsedAt: number;
  description: string;
}

/** A record file found by `list` (for du and prune); `record` is undefined if the file is not a valid record. */
export interface StoredRecord {
  path: string;
  record: CacheRecord | undefined;
  lastUsedAt: number;
}

/**
 * Cache records under cache/<shard>/<key>.json, one file each, replaced atomically.
 * A use only touches the file's mtime: a prune that removed the record meanwhile makes
 * the touch fail, so a use can never bring back a record whose layers are gone.
 */
export class CacheIndex {
  constructor(
    private readonly dir: string,
    private readonly temp: TempArea,
    private readonly gate: PruneGate,
    private readonly layerExists: (id: string) => Promise<boolean>,
  ) {}

  recordPath(key: string): string {
    return join(this.dir, shardOf(checkCacheKey(key)), `${key}.json`);
  }

  /** The record, or undefined on a miss (also when one of its layers is missing). Records a use. */
  async get(key: string): Promise<CacheRecord | undefined> {
    const path = this.recordPath(key);
    if (!(await recordUse(path, this.gate))) return undefined;
    let text: string;
    let lastUsedAt: number;
    try {
      [text, lastUsedAt] = await Promise.all([readFile(path, "utf8"), stat(path).then((stats) => stats.mtimeMs)]);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return undefined;
      throw describeFsError(error, "read", path);
    }
    const record = parseRecord(text, key, lastUsedAt);
    if (record === undefined) return undefined; // not written by tsbuild; prune removes it
    const present = await Promise.all(record.layers.map((layer) => this.layerExists(layer)));
    return present.every(Boolean) ? record : undefined;
  }

  async put(input: Omit<CacheRecord, "createdAt" | "lastUsedAt">): Promise<void> {
    const path = this.recordPath(input.key);
    for (const layer of input.layers) {
      checkLayerId(layer);
      if (!(await this.layerExists(layer))) {
        throw new StoreError({
          code: "ENOLAYER",
          message: `cannot record cache key ${input.key}: its layer ${layer} does not exist`,
          path,
          hint: "create the layers (createLayer) before the record that lists them",
        });
      }
    }
    const now = Date.now();
    const record: CacheRecord = { key: input.key, layers: [...input.layers], createdAt: now, lastUsedAt: now, description: input.description };
    await ensureDir(join(this.dir, shardOf(input.key)));
    await writeFileAtomic(path, JSON.stringify(record), { tempPath: this.temp.path("record"), fsync: true, mtime: new Date(now) });
  }

  async list(): Promise<StoredRecord[]> {
    const found: StoredRecord[] = [];
    for (const shard of await readdir(this.dir)) {
      for (const name of await listDir(join(this.dir, shard))) {
        const path = join(this.dir, shard, name);
        try {
          const [text, stats] = await Promise.all([readFile(path, "utf8"), stat(path)]);
          const key = name.endsWith(".json") ? name.slice(0, -".json".length) : name;
          found.push({ path, record: parseRecord(text, key, stats.mtimeMs), lastUsedAt: stats.mtimeMs });
        } catch (error) {
          if (errnoCode(error) === "ENOENT") continue; // removed meanwhile
          if (errnoCode(error) === "EISDIR") {
            found.push({ path, record: undefined, lastUsedAt: 0 });
            continue;
          }
          throw describeFsError(error, "read", path);
        }
      }
    }
    return found;
  }
}

function parseRecord(text: string, key: string, mtimeMs: number): CacheRecord | undefined {
  try {
    const parsed = JSON.parse(text) as Partial<CacheRecord>;
    if (
      parsed.key !== key ||
      !Array.isArray(parsed.layers) ||
      !parsed.layers.every((layer) => typeof layer === "string" && isValidLayerId(layer)) ||
      typeof parsed.createdAt !== "number" ||
      typeof parsed.lastUsedAt !== "number" ||
      typeof parsed.description !== "string"
    ) {
      return undefined;
    }
    return {
      key,
      layers: parsed.layers,
      createdAt: parsed.createdAt,
      lastUsedAt: Math.max(parsed.lastUsedAt, mtimeMs),
      description: parsed.description,
    };
  } catch {
    return undefined;
  }
}
