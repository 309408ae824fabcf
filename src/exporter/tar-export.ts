import { checkEpoch } from "./epoch.ts";
import type { LayerSource } from "./layer-blob.ts";
import { walkMerged } from "./merged-walk.ts";
import { FsEntryWriter, isSmallFile } from "./tar-entries.ts";
import { writeTarOutput, type TarDestination } from "./tar-output.ts";

export interface ExportTarOptions {
  /** SOURCE_DATE_EPOCH: every entry's mtime becomes this time, as BuildKit's tar exporter does. */
  sourceDateEpoch?: number;
}

/**
 * `-o type=tar`: the merged filesystem of the layers (bottom first) as one plain tar, whiteouts
 * and opaque directories applied, no whiteout entries. Entries in a fixed order (depth first,
 * a directory before its children, siblings in byte order), names as in layer tars, modes,
 * owners and mtimes kept, hard links kept; streamed. A file is written to a temporary file
 * and renamed; a stream is ended.
 */
export async function exportTar(layers: readonly LayerSource[], dest: TarDestination, options: ExportTarOptions = {}): Promise<void> {
  const epoch = options.sourceDateEpoch;
  if (epoch !== undefined) checkEpoch(epoch);
  const time = (mtimeMs: number) => (epoch === undefined ? Math.floor(mtimeMs / 1000) : epoch);
  await writeTarOutput(dest, async (pack) => {
    const writer = new FsEntryWriter(pack, time);
    await walkMerged(layers, (entry) => writer.add(entry), { readAhead: isSmallFile });
  });
}
