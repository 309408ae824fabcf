/**
 * One cold, one warm and one incremental tsbuild build of the bench project (bench/build-cache),
 * with --progress rawjson timings: where a rebuild's time goes, without BuildKit.
 * Run: node --import tsx bench/profile-build.ts
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateContext, editSourceFile } from "./build-cache/context.ts";
import { run } from "./build-cache/run.ts";

const SHAPE = { seed: 20_240_601, sourceFiles: 2_985, packages: 8, blobs: 4, blobBytes: 16 * 2 ** 20 };
const bin = join(import.meta.dirname, "..", "bin", "tsbuild.js");
const work = await mkdtemp(join(tmpdir(), "tsbuild-profile-"));
try {
  const context = await generateContext(join(work, "ctx"), SHAPE);
  const build = (label: string, extra: string[] = []) =>
    run({ cmd: process.execPath, args: [...extra, bin, "build", "--root", join(work, "root"), "--progress", "plain", "-o", `type=local,dest=${join(work, `out-${label}-${Date.now()}`)}`, context.dir] }).then((result) => {
      console.log(`${label}: ${result.ms.toFixed(0)} ms`);
      return result;
    });
  await build("cold");
  await build("warm");
  await build("warm");
  for (let round = 0; round < 3; round++) {
    await editSourceFile(context, round);
    const result = await build("incremental", process.env.PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${join(tmpdir(), "tsbuild-cpu")}`] : []);
    if (round === 2) console.log(result.output.split("\n").filter((line) => /DONE \d|^#\d+ \[/.test(line)).join("\n"));
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
