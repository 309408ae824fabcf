import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/**
 * Bytes a directory tree holds: the apparent size of regular files (hard links counted
 * once) and symlinks. Directory blocks are left out, so a figure does not depend on the
 * file system it was measured on.
 */
export async function treeSize(root: string): Promise<number> {
  let total = 0;
  const seenInodes = new Set<string>();
  const pending = [root];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        pending.push(path);
      } else if (entry.isFile() || entry.isSymbolicLink()) {
        const stats = await lstat(path, { bigint: true });
        if (stats.nlink > 1n) {
          const inode = `${stats.dev}:${stats.ino}`;
          if (seenInodes.has(inode)) continue;
          seenInodes.add(inode);
        }
        total += Number(stats.size);
      }
    }
  }
  return total;
}
