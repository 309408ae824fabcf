import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { describeFsError, errnoCode } from "./errors.ts";

/**
 * `mkdir -p` with an honest error. Node's recursive mkdir reports ENOENT when the real
 * cause is a read-only file system, and names the last directory rather than the one
 * that could not be created; on failure, creating level by level finds the real errno
 * and path, so the message points at what the user must fix.
 */
export async function ensureDir(path: string, action = "create the directory"): Promise<void> {
  try {
    await mkdir(path, { recursive: true });
    return;
  } catch (error) {
    if (errnoCode(error) === undefined) throw error;
  }
  const levels: string[] = [];
  for (let dir = path; dir !== dirname(dir); dir = dirname(dir)) levels.unshift(dir);
  for (const dir of levels) {
    try {
      await mkdir(dir);
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") throw describeFsError(error, action, dir);
    }
  }
}
