import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pLimit from "p-limit";
import { hashFile } from "../context/index.ts";
import { canonicalJson, sha256 } from "../llb/index.ts";
import type { StateRoot } from "./store/index.ts";
import type { LayerTree, TreeEntry } from "./ops/source-tree.ts";

const hashLimit = pLimit(8);

/**
 * The checksum of what a `COPY --from` selects in a stack of layers: names,
 * types, modes, owners, link targets and contents. A stage that ran again but
 * produced the same files then still gives a cache hit, as in BuildKit.
 * Layers never change, so the result is kept under the state root and a warm
 * build reads one small file instead of hashing.
 */
export async function layerSelectionChecksum(
  store: StateRoot,
  tree: LayerTree,
  sources: readonly string[],
  excludes: readonly string[],
): Promise<string> {
  const layers = tree.layers;
  const memoKey = sha256(canonicalJson({ layers: layers.map((layer) => layer.id), sources, excludes })).slice(7);
  const memoDir = join(store.dir, "selection-checksums", memoKey.slice(0, 2));
  const memoPath = join(memoDir, memoKey);
  const remembered = await readFile(memoPath, "utf8").catch(() => undefined);
  if (remembered?.startsWith("sha256:")) return remembered;

  const matched = await tree.match(sources, excludes);
  const records = await Promise.all(
    matched.flatMap((source) =>
      [source.entry, ...source.children].map((entry) => hashLimit(() => entryRecord(source.source, entry))),
    ),
  );
  const checksum = sha256(records.join("\n"));
  await mkdir(memoDir, { recursive: true });
  const temp = store.tempPath("selection-checksum");
  await writeFile(temp, checksum);
  await rename(temp, memoPath);
  return checksum;
}

async function entryRecord(source: string, entry: TreeEntry): Promise<string> {
  // Small files are read synchronously: for hundreds of them far cheaper than a stream each.
  const content = entry.type === "file" && entry.hostPath ? (await hashFile(entry.hostPath, entry.size ?? Infinity)).digest : "";
  return canonicalJson({ source, path: entry.path, type: entry.type, mode: entry.mode, uid: entry.uid, gid: entry.gid, link: entry.linkTarget ?? "", content });
}
