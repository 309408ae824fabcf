import { lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Bytes a directory tree holds: the apparent size of regular files (hard links counted
 * once) and symlinks. Directory blocks are left out, so a figure does not depend on the
 * file system it was measured on.
 *
 * Synchronous on purpose: the inodes of a layer just written are in memory, where one
 * lstatSync costs a few microseconds and a promise round trip through libuv's thread
 * pool ten times that (a 3,000-file layer: ~10 ms instead of ~200).
 */
export async function treeSize(root: string): Promise<number> {
  let total = 0;
  const seenInodes = new Set<string>();
  const pending = [root];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        pending.push(path);
      } else if (entry.isFile() || entry.isSymbolicLink()) {
        const stats = lstatSync(path, { bigint: true });
        if (stats.nlink > 1n) {
          const inode = `${stats.dev}:${stats.ino}`;
          if (seenInodes.has(inode)) continue;
          seenInodes.add(inode);
        }
        total += Number(stats.size);
      }
    }
    // Let other work in the process run between directories.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return total;
}
