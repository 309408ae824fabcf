import { rename, rm } from "node:fs/promises";
import { UserError } from "../../user-error.ts";
import { runCommand } from "./command.ts";

/**
 * Turns an overlay upper directory into a layer: it already is one (kernel
 * whiteouts are 0:0 character devices, as layers keep them); only the opaque
 * directories, which the kernel marks with an xattr, must be listed.
 */
export async function commitUpperDir(upperDir: string, layerDir: string): Promise<{ opaqueDirs: string[] }> {
  const opaqueDirs = await opaqueDirectories(upperDir);
  await rm(layerDir, { recursive: true, force: true });
  await rename(upperDir, layerDir);
  return { opaqueDirs };
}

async function opaqueDirectories(dir: string): Promise<string[]> {
  let output: string;
  try {
    // With -m, files without the attribute print nothing (and are no error).
    output = await runCommand("getfattr", ["-R", "--absolute-names", "-d", "-m", "^trusted\\.overlay\\.opaque$", dir]);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("cannot run getfattr")) {
      throw new UserError("getfattr is needed to record opaque directories", "install the Debian package attr (scripts/setup.sh does)");
    }
    throw error;
  }
  const dirs: string[] = [];
  for (const line of output.split("\n")) {
    const match = /^# file: (.*)$/.exec(line);
    if (match?.[1] && match[1].startsWith(dir)) dirs.push(match[1].slice(dir.length).replace(/^\/*/, "/"));
  }
  return dirs;
}
