import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Every temporary directory the tests make (state roots, contexts, outputs) goes under one
 * directory per run, removed when the run ends: a test run would otherwise leave thousands
 * of them, and gigabytes of layers, in /tmp. `--one-file-system`: a mount a failed test left
 * behind is not descended into.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "tsbuild-tests-"));
  // Like /tmp: tests that run a process as another user need to write there too.
  chmodSync(dir, 0o1777);
  process.env["TMPDIR"] = dir;
  return () => {
    spawnSync("rm", ["-rf", "--one-file-system", dir], { stdio: "ignore" });
  };
}
