/**
 * Checks that two builders exported the same filesystem, so the timings compare equal work:
 * same paths, types, permission bits, sizes, file contents and symlink targets.
 */
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";

export interface TreeSummary {
  files: number;
  bytes: number;
}

export interface Comparison extends TreeSummary {
  identical: boolean;
  /** The first few differences, as `path: what`. */
  differences: string[];
}

export async function compareTrees(expectedDir: string, actualDir: string): Promise<Comparison> {
  const [expected, actual] = await Promise.all([fingerprint(expectedDir), fingerprint(actualDir)]);
  const differences: string[] = [];
  for (const [path, print] of expected.entries) {
    const other = actual.entries.get(path);
    if (other === undefined) differences.push(`${path}: missing`);
    else if (other !== print) differences.push(`${path}: ${print} ≠ ${other}`);
  }
  for (const path of actual.entries.keys()) if (!expected.entries.has(path)) differences.push(`${path}: unexpected`);
  return { identical: differences.length === 0, differences: differences.slice(0, 10), files: expected.files, bytes: expected.bytes };
}

interface Fingerprint extends TreeSummary {
  entries: Map<string, string>;
}

async function fingerprint(root: string): Promise<Fingerprint> {
  const result: Fingerprint = { entries: new Map(), files: 0, bytes: 0 };
  await walk(root, "", result);
  return result;
}

async function walk(root: string, relative: string, into: Fingerprint): Promise<void> {
  for (const name of await readdir(join(root, relative))) {
    const path = relative === "" ? name : `${relative}/${name}`;
    const abs = join(root, path);
    const stat = await lstat(abs);
    const mode = (stat.mode & 0o7777).toString(8);
    if (stat.isDirectory()) {
      into.entries.set(path, `dir ${mode}`);
      await walk(root, path, into);
    } else if (stat.isSymbolicLink()) {
      into.entries.set(path, `symlink -> ${await readlink(abs)}`);
    } else if (stat.isFile()) {
      into.files++;
      into.bytes += stat.size;
      const digest = createHash("sha256").update(await readFile(abs)).digest("hex").slice(0, 16);
      into.entries.set(path, `file ${mode} ${stat.size} ${digest}`);
    } else {
      into.entries.set(path, `other ${mode}`);
    }
  }
}
