import { chmod, lstat, mkdir, readdir, utimes } from "node:fs/promises";
import { join } from "node:path";
import pLimit from "p-limit";
import { CommandFailedError, runCommand } from "../solver/ops/command.ts";

/** Splitting stops at about this many parts (whole subtrees), copied by this many cp processes at once. */
const PARTS = 32;
/** A directory is not split if that would make more parts than this. */
const MAX_PARTS = 64;
const COPIES_AT_ONCE = 4;

const CP_FLAGS = ["-R", "--no-dereference", "--preserve=mode,timestamps,links", "--remove-destination"];

/**
 * Copies the tree `from` into the empty directory `dest` (modes and times kept, owners
 * not) with several cp processes at once: creating files is mostly waiting for the file
 * system, and one process waits for one file at a time. The tree is split into parts
 * (whole subtrees) by expanding directories breadth first; the directories it expanded are
 * made here and get their metadata once everything inside is copied. Files that are hard
 * links of each other must stay linked, which only one cp can do: a tree that has any is
 * copied by one process.
 */
export async function copyTree(from: string, dest: string): Promise<void> {
  if (await hasHardLinksWithin(from)) {
    await runCommand("cp", [...CP_FLAGS, `${from}/.`, `${dest}/`]).catch((error: unknown) => {
      throw cpFailure(error);
    });
    return;
  }
  const { parts, splitDirs } = await splitTree(from);
  for (const dir of splitDirs) if (dir !== "") await mkdir(join(dest, dir));
  const limit = pLimit(COPIES_AT_ONCE);
  const copies = await Promise.allSettled(parts.map((part) => limit(() => runCommand("cp", [...CP_FLAGS, join(from, part), join(dest, part, "..")]))));
  // Every cp has ended before a failure is reported: the caller unmounts `from` next.
  const failed = copies.find((copy) => copy.status === "rejected");
  if (failed) throw cpFailure(failed.reason);
  // Deepest first, the root last: nothing is added to a directory after its times are set.
  // (Node sets times from a double of seconds: within a microsecond of cp's, not to the nanosecond.)
  for (const dir of [...splitDirs].reverse()) {
    const stats = await lstat(join(from, dir), { bigint: true });
    await chmod(join(dest, dir), Number(stats.mode & 0o7777n));
    await utimes(join(dest, dir), Number(stats.atimeNs) / 1e9, Number(stats.mtimeNs) / 1e9);
  }
}

/** What cp said (its own message names the file), without our command line and its temporary paths. */
function cpFailure(error: unknown): unknown {
  return error instanceof CommandFailedError && error.stderr !== "" ? new Error(error.stderr.split("\n")[0]) : error;
}

/** Whether two paths of the tree are one inode (one pass of find over the files that have links). */
async function hasHardLinksWithin(root: string): Promise<boolean> {
  const inodes = (await runCommand("find", [root, "-type", "f", "-links", "+1", "-printf", "%D:%i\\n"])).split("\n").filter(Boolean);
  return new Set(inodes).size !== inodes.length;
}

/**
 * Parts to copy (relative paths of whole subtrees) and the directories split to get them
 * (relative, parents first, "" for the root): directories are split breadth first while
 * there are fewer than PARTS parts and the split keeps them within MAX_PARTS.
 */
async function splitTree(root: string): Promise<{ parts: string[]; splitDirs: string[] }> {
  const splitDirs = [""];
  const parts = new Set<string>();
  const queue: string[] = [];
  for (const child of await children(root, "")) {
    parts.add(child.path);
    if (child.isDirectory) queue.push(child.path);
  }
  for (let dir = queue.shift(); dir !== undefined && parts.size < PARTS; dir = queue.shift()) {
    const inside = await children(root, dir);
    if (parts.size - 1 + inside.length > MAX_PARTS) continue;
    parts.delete(dir);
    splitDirs.push(dir);
    for (const child of inside) {
      parts.add(child.path);
      if (child.isDirectory) queue.push(child.path);
    }
  }
  return { parts: [...parts], splitDirs };
}

async function children(root: string, dir: string): Promise<{ path: string; isDirectory: boolean }[]> {
  const entries = await readdir(join(root, dir), { withFileTypes: true });
  return entries.map((entry) => ({ path: dir === "" ? entry.name : `${dir}/${entry.name}`, isDirectory: entry.isDirectory() }));
}
