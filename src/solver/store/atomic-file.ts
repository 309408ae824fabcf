import { open, rename, unlink, utimes } from "node:fs/promises";
import { describeFsError } from "./errors.ts";

/*
 * Every file in the state root appears by rename(2) of a complete temp file from tmp/
 * (same file system). rename is atomic: a reader sees the old file, the new one, or
 * none, never a partial one, even if the writer is killed with SIGKILL; two writers of
 * the same name simply replace each other's complete file. This gives the safety of a
 * transactional database without a native dependency such as better-sqlite3.
 */

export interface AtomicWriteOptions {
  /** A fresh path under the root's tmp/. */
  tempPath: string;
  /** Flush the data to disk before the rename, so a power loss cannot leave an empty file under the final name. */
  fsync: boolean;
  mode?: number;
  /** The modification time to give the file (tsbuild uses it as "last used"). */
  mtime?: Date;
}

export async function writeFileAtomic(target: string, data: string | Uint8Array, options: AtomicWriteOptions): Promise<void> {
  const { tempPath } = options;
  try {
    const handle = await open(tempPath, "wx", options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      if (options.fsync) await handle.datasync();
    } finally {
      await handle.close();
    }
    if (options.mtime !== undefined) await utimes(tempPath, options.mtime, options.mtime);
    await rename(tempPath, target);
  } catch (error) {
    await unlink(tempPath).catch(() => undefined);
    throw describeFsError(error, "write", target);
  }
}
