import { readdir } from "node:fs/promises";
import { describeFsError, errnoCode } from "./errors.ts";

/** The names in `dir`; none when it is missing (or not a directory): entries come and go under concurrent processes. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return [];
    throw describeFsError(error, "read", dir);
  }
}
