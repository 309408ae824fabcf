/** The builders under comparison, behind one small interface. */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runChecked, succeeds, type Command } from "./run.ts";

export interface Builder {
  /** Key in the JSON results. */
  id: string;
  /** Column title. */
  name: string;
  version: string;
  /** The timed command: build `contextDir`, exporting the result to `dest` (a directory) unless undefined. */
  buildCommand(contextDir: string, dest: string | undefined, flags?: BuildFlags): Command;
  /** Untimed, before each cold run: forget everything cached. */
  resetCache(): Promise<void>;
  /** Untimed, at the end: stop what was started and remove what was made. */
  close(): Promise<void>;
}

/** Options some benches add to the build command. */
export interface BuildFlags {
  /** Run every step (`--no-cache`). */
  noCache?: boolean;
  /** tsbuild's progress format (default plain); BuildKit's and buildah's output stays as it is. */
  progress?: "plain" | "rawjson";
  /**
   * BuildKit and buildah: `--network=none` for every RUN step. tsbuild has no such option
   * (give its RUN steps `--network=none` in the Dockerfile): asking for it throws.
   */
  network?: "none";
}

const TSBUILD_BIN = fileURLToPath(new URL("../../bin/tsbuild.js", import.meta.url));

/** tsbuild from this checkout (the bundle in dist/), with its own state root under `workDir`. */
export async function createTsbuild(workDir: string): Promise<Builder> {
  const root = join(workDir, "tsbuild-root");
  const version = (await runChecked({ cmd: process.execPath, args: [TSBUILD_BIN, "--version"] })).output.trim();
  return {
    id: "tsbuild",
    name: "tsbuild",
    version,
    buildCommand: (contextDir, dest, flags = {}) => {
      if (flags.network !== undefined) throw new Error("tsbuild build has no --network option: use RUN --network=none in the Dockerfile");
      return {
        cmd: process.execPath,
        // Plain progress by default, like `docker build --progress=plain`: its step timings are kept for the report.
        args: [
          TSBUILD_BIN,
          "build",
          "--root",
          root,
          "--progress",
          flags.progress ?? "plain",
          ...(flags.noCache === true ? ["--no-cache"] : []),
          ...(dest === undefined ? [] : ["-o", `type=local,dest=${dest}`]),
          contextDir,
        ],
      };
    },
    resetCache: () => rm(root, { recursive: true, force: true }),
    close: () => rm(root, { recursive: true, force: true }),
  };
}

/**
 * buildah with the vfs driver (no overlay mounts needed) and `--layers`, so that it caches
 * steps at all. Its whole storage lives under `workDir`.
 */
export async function createBuildah(workDir: string): Promise<Builder> {
  const root = join(workDir, "buildah");
  const global = ["--root", join(root, "storage"), "--runroot", join(root, "run"), "--storage-driver", "vfs"];
  if (!(await succeeds({ cmd: "buildah", args: ["--version"] }))) throw new Error("buildah is not installed (run the bench with --buildah yes to install it)");
  const version = (await runChecked({ cmd: "buildah", args: ["--version"] })).output.trim().replace(/^buildah version /, "");
  return {
    id: "buildah",
    name: "buildah",
    version,
    buildCommand: (contextDir, dest, flags = {}) => ({
      cmd: "buildah",
      args: [...global, "bud", "--layers", "--quiet", ...(flags.noCache === true ? ["--no-cache"] : []), ...(flags.network === undefined ? [] : [`--network=${flags.network}`]), ...(dest === undefined ? [] : ["-o", `type=local,dest=${dest}`]), contextDir],
    }),
    resetCache: () => rm(root, { recursive: true, force: true }),
    close: () => rm(root, { recursive: true, force: true }),
  };
}
