import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { ensureDir } from "./ensure-dir.ts";
import { describeFsError, errnoCode } from "./errors.ts";
import { listDir } from "./list-dir.ts";
import { checkCacheKey, checkLayerId, isValidLayerId, shardOf } from "./names.ts";
import type { TempArea } from "./temp-area.ts";

/**
 * The files a step last wrote into a layer, each with an identity string that says
 * everything the layer keeps of it (content digest, mode, owner, mtime). When the step
 * runs again with a few sources changed, a file whose identity is unchanged is hard-linked
 * from that layer instead of being copied: layers never change once made.
 */
export interface ReusableFiles {
  layerId: string;
  /** Layer path ("/app/src/a.ts") → identity. */
  files: ReadonlyMap<string, string>;
}

interface StoredFiles {
  layer: string;
  files: Record<string, string>;
}

/**
 * reuse/<shard>/<step key>.json, one per step (the step's op, without the checksums of its
 * sources), replaced atomically by the step's latest run. Losing one only costs a full copy,
 * so they are not fsynced; one whose layer was pruned is ignored, and removed by prune.
 */
export class FileReuseIndex {
  constructor(
    private readonly dir: string,
    private readonly temp: TempArea,
  ) {}

  /** The record for `key` (its layer may be gone), or undefined. */
  async get(key: string): Promise<ReusableFiles | undefined> {
    const path = this.recordPath(key);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return undefined;
      throw describeFsError(error, "read", path);
    }
    const stored = parse(text);
    if (stored === undefined) return undefined;
    return { layerId: stored.layer, files: new Map(Object.entries(stored.files)) };
  }

  async put(key: string, reusable: ReusableFiles): Promise<void> {
    checkLayerId(reusable.layerId);
    const path = this.recordPath(key);
    const stored: StoredFiles = { layer: reusable.layerId, files: Object.fromEntries(reusable.files) };
    await ensureDir(join(this.dir, shardOf(key)));
    await writeFileAtomic(path, JSON.stringify(stored), { tempPath: this.temp.path("reuse"), fsync: false });
  }

  /** Removes records whose layer is gone (or that are unreadable); returns how many. */
  async removeDangling(layerExists: (id: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    for (const shard of await listDir(this.dir)) {
      for (const name of await listDir(join(this.dir, shard))) {
        const path = join(this.dir, shard, name);
        const stored = await readFile(path, "utf8").then(parse, () => undefined);
        if (stored !== undefined && (await layerExists(stored.layer))) continue;
        await rm(path, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }

  private recordPath(key: string): string {
    return join(this.dir, shardOf(checkCacheKey(key)), `${key}.json`);
  }
}

function parse(text: string): StoredFiles | undefined {
  try {
    const parsed = JSON.parse(text) as Partial<StoredFiles>;
    if (typeof parsed.layer !== "string" || !isValidLayerId(parsed.layer)) return undefined;
    if (typeof parsed.files !== "object" || parsed.files === null) return undefined;
    if (!Object.values(parsed.files).every((identity) => typeof identity === "string")) return undefined;
    return { layer: parsed.layer, files: parsed.files };
  } catch {
    return undefined;
  }
}
