import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

/**
 * `freshDir(prefix)` for a group of tests: a new empty directory named
 * tsbuild-<group>-<prefix>-*, removed after the test file (vitest loads this module once per file).
 */
export function freshDirs(group: string): (prefix: string) => string {
  const created: string[] = [];
  afterAll(() => {
    for (const dir of created) rmSync(dir, { recursive: true, force: true });
  });
  return (prefix) => {
    const dir = mkdtempSync(join(tmpdir(), `tsbuild-${group}-${prefix}-`));
    created.push(dir);
    return dir;
  };
}
