import { chmodSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { copyTree } from "../../src/build/copy-tree.ts";

function temp(label: string): string {
  return mkdtempSync(join(tmpdir(), `tsbuild-${label}-`));
}

/** Every path below `root` with what a copy must keep: type, mode, mtime, content or link target. */
function describeTree(root: string): string[] {
  const lines: string[] = [];
  const visit = (relative: string) => {
    const path = join(root, relative);
    const stats = lstatSync(path);
    const what = stats.isSymbolicLink() ? `-> ${readlinkSync(path)}` : stats.isFile() ? readFileSync(path, "utf8") : stats.isDirectory() ? "dir" : "other";
    lines.push(`${relative || "."} ${(stats.mode & 0o7777).toString(8)} ${stats.isSymbolicLink() ? "" : Math.floor(stats.mtimeMs)} ${what}`);
    if (stats.isDirectory()) for (const name of readdirSync(path).sort()) visit(relative ? join(relative, name) : name);
  };
  visit("");
  return lines;
}

/** A tree wide and deep enough to be split into many parts, with odd names, modes and times. */
function makeTree(): string {
  const root = temp("tree");
  for (let d = 0; d < 12; d++) {
    for (let s = 0; s < 8; s++) {
      const dir = join(root, `d${d}`, `s${s}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 5; f++) writeFileSync(join(dir, `f${f}`), `${d}/${s}/${f}`);
    }
  }
  mkdirSync(join(root, "empty"));
  writeFileSync(join(root, "-leading dash"), "dash");
  writeFileSync(join(root, "tool"), "#!/bin/sh\n", { mode: 0o4755 });
  chmodSync(join(root, "tool"), 0o4755);
  symlinkSync("d0/s0/f0", join(root, "link"));
  symlinkSync("/etc/passwd", join(root, "d1", "absolute"));
  chmodSync(join(root, "d2"), 0o700);
  for (const dir of ["d3/s3", "d3", "empty", ""]) utimesSync(join(root, dir), 1_600_000_000, 1_600_000_000);
  chmodSync(root, 0o750);
  return root;
}

describe("copyTree", () => {
  it("copies a tree in parts that is the same as the original, directory times and modes included", async () => {
    const from = makeTree();
    const dest = temp("dest");
    await copyTree(from, dest);
    expect(describeTree(dest)).toEqual(describeTree(from));
  });

  it("keeps hard links of the tree linked", async () => {
    const from = makeTree();
    linkSync(join(from, "d0", "s0", "f0"), join(from, "d9", "s1", "also-f0"));
    const dest = temp("dest");
    await copyTree(from, dest);
    expect(describeTree(dest)).toEqual(describeTree(from));
    expect(lstatSync(join(dest, "d9", "s1", "also-f0")).ino).toBe(lstatSync(join(dest, "d0", "s0", "f0")).ino);
  });

  it("fails with the tool's message", async () => {
    await expect(copyTree(join(temp("tree"), "missing"), temp("dest"))).rejects.toThrow(/find .* failed: .*No such file or directory/);
  });
});
