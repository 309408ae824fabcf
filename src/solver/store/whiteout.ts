import { execFile } from "node:child_process";
import type { Stats } from "node:fs";
import { link, rename, unlink } from "node:fs/promises";
import { promisify } from "node:util";
import { StoreError, describeFsError, errnoCode } from "./errors.ts";

const run = promisify(execFile);

/**
 * overlayfs marks a deleted path in an upper (or lower) dir with a character device
 * whose device number is 0:0. That is also how layers in the state root record deletions.
 */
export function isWhiteout(stats: Pick<Stats, "isCharacterDevice" | "rdev">): boolean {
  return stats.isCharacterDevice() && stats.rdev === 0;
}

/**
 * Creates a whiteout at `path` (which must not exist).
 *
 * Node cannot mknod(2), so a device node costs a `mknod` process. With `template` (a
 * whiteout on the same file system) the new whiteout is a hard link to it instead,
 * which is a single syscall: overlayfs only looks at the inode type and device number,
 * and shares one whiteout inode the same way itself. The template is created on first
 * use, and replaced when it reaches the file system's link limit.
 */
export async function createWhiteout(path: string, options: { template?: string } = {}): Promise<void> {
  const template = options.template;
  if (template === undefined) return makeDeviceNode(path);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await link(template, path);
      return;
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "EMLINK") {
        await replaceTemplate(template);
        continue;
      }
      // Another file system, or links not supported: make the node itself.
      if (code === "EXDEV" || code === "EPERM" || code === "ENOTSUP") return makeDeviceNode(path);
      throw describeFsError(error, "create the whiteout", path);
    }
  }
  return makeDeviceNode(path);
}

async function replaceTemplate(template: string): Promise<void> {
  const fresh = `${template}.${process.pid}.${Date.now()}`;
  await makeDeviceNode(fresh);
  try {
    await rename(fresh, template);
  } catch (error) {
    await unlink(fresh).catch(() => undefined);
    throw error;
  }
}

async function makeDeviceNode(path: string): Promise<void> {
  try {
    await run("mknod", ["--", path, "c", "0", "0"]);
  } catch (error) {
    // A failed spawn has an errno code; a failed mknod has its exit status (a number).
    if (errnoCode(error) === "ENOENT") {
      throw new StoreError({
        code: "ENOMKNOD",
        message: `cannot create the whiteout ${path}: the mknod command is missing`,
        path,
        hint: "install coreutils (it provides mknod)",
      });
    }
    const stderr = String((error as { stderr?: unknown }).stderr ?? "").trim();
    throw new StoreError({
      code: "EWHITEOUT",
      message: `cannot create the whiteout ${path}: ${stderr || String(error)}`,
      path,
      hint: /not permitted/i.test(stderr) ? "creating device nodes needs root (CAP_MKNOD): run tsbuild as root" : undefined,
      cause: error,
    });
  }
}
