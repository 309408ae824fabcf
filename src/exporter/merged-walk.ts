import type { Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ExporterError } from "./errors.ts";
import type { LayerSource } from "./layer-blob.ts";
import { joinLayerPath, normalizeOpaqueDir } from "./paths.ts";
import { entryKind, READ_AHEAD, readWhole, STAT_CONCURRENCY, type LayerDirEntry, type WalkOptions } from "./walk.ts";

/** A layer's copy of one directory of the merged tree. */
interface DirSource {
  layer: number;
  abs: string;
}

/**
 * Walks the merged filesystem of layers (bottom first, overlay upper format), as overlayfs
 * shows it: depth first, a directory before its children, siblings in byte order of their
 * names. Each path comes from its topmost layer; whiteouts hide lower layers' entries (and are
 * not visited), opaque directories hide lower layers' children, a non-directory hides a lower
 * directory. A directory's metadata is its topmost layer's.
 */
export async function walkMerged(layers: readonly LayerSource[], visit: (entry: LayerDirEntry) => Promise<void>, options: WalkOptions = {}): Promise<void> {
  const opaque = layers.map((layer) => new Set(layer.opaqueDirs.map(normalizeOpaqueDir)));
  const roots: DirSource[] = [];
  for (let layer = layers.length - 1; layer >= 0; layer--) {
    const dir = (layers[layer] as LayerSource).dir;
    const stat = await lstat(dir).catch((error: unknown) => {
      throw new ExporterError("ERR_LAYER_SOURCE", `layer directory ${dir} cannot be read: ${(error as Error).message}`, { cause: error });
    });
    if (!stat.isDirectory()) throw new ExporterError("ERR_LAYER_SOURCE", `layer directory ${dir} is not a directory`);
    roots.push({ layer, abs: dir });
    if ((opaque[layer] as Set<string>).has("")) break;
  }
  await walkDir("", roots, opaque, visit, options);
}

async function walkDir(
  path: string,
  sources: readonly DirSource[],
  opaque: readonly Set<string>[],
  visit: (entry: LayerDirEntry) => Promise<void>,
  options: WalkOptions,
): Promise<void> {
  // Each source's listing of this directory, topmost layer first.
  const listings = await Promise.all(sources.map((source) => list(source.abs)));
  const chosen = new Map<string, { entry: LayerDirEntry; from: number }>();
  const decided = new Set<string>();
  listings.forEach((listing, from) => {
    for (const [name, stat] of listing) {
      if (decided.has(name)) continue;
      decided.add(name);
      const kind = entryKind(stat);
      if (kind === "whiteout") continue;
      const source = sources[from] as DirSource;
      chosen.set(name, { entry: { path: joinLayerPath(path, name), abs: join(source.abs, name), stat, kind }, from });
    }
  });
  const entries = [...chosen.entries()].sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  let ahead = 0;
  for (let i = 0; i < entries.length; i++) {
    for (; options.readAhead && ahead < entries.length && ahead < i + READ_AHEAD; ahead++) {
      const next = (entries[ahead] as [string, { entry: LayerDirEntry }])[1].entry;
      if (next.kind === "file" && options.readAhead(next)) {
        next.content = readWhole(next.abs, next.stat.size);
        next.content.catch(() => undefined); // reported when the visit awaits it
      }
    }
    const [name, { entry, from }] = entries[i] as [string, { entry: LayerDirEntry; from: number }];
    await visit(entry);
    if (entry.kind !== "dir") continue;
    // The layers whose directory of this name merges into it: down from the topmost, until
    // one has something else there (a file, a whiteout) or makes it opaque.
    const below: DirSource[] = [];
    for (let k = from; k < sources.length; k++) {
      const source = sources[k] as DirSource;
      const stat = (listings[k] as Map<string, Stats>).get(name);
      if (stat === undefined) continue;
      if (!stat.isDirectory()) break;
      below.push({ layer: source.layer, abs: join(source.abs, name) });
      if ((opaque[source.layer] as Set<string>).has(entry.path)) break;
    }
    await walkDir(entry.path, below, opaque, visit, options);
  }
}

/** A directory's entries and their lstat. */
async function list(abs: string): Promise<Map<string, Stats>> {
  const names = await readdir(abs);
  const result = new Map<string, Stats>();
  for (let start = 0; start < names.length; start += STAT_CONCURRENCY) {
    const batch = names.slice(start, start + STAT_CONCURRENCY);
    const stats = await Promise.all(batch.map((name) => lstat(join(abs, name))));
    batch.forEach((name, i) => result.set(name, stats[i] as Stats));
  }
  return result;
}
