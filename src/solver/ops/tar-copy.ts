import { spawn } from "node:child_process";
import { BuildStepError } from "../errors.ts";

/**
 * Copies many entries of a directory in one go with two GNU tar processes:
 * for thousands of small files that is several times faster than a system
 * call per file from Node. `paths` are relative to `fromDir`, parents first;
 * owners, modes (setuid included) and mtimes come along, with an owner and a
 * chmod spec applied on the way when given.
 */
export function copyWithTar(options: {
  fromDir: string;
  paths: readonly string[];
  toDir: string;
  /** Absent: keep the files' own owners. */
  owner?: { uid: number; gid: number };
  chmod?: string;
}): Promise<void> {
  const createArgs = [
    "--create", "--file=-", "--numeric-owner",
    ...(options.owner ? [`--owner=${options.owner.uid}`, `--group=${options.owner.gid}`] : []),
    ...(options.chmod ? [`--mode=${options.chmod}`] : []),
    `--directory=${options.fromDir}`, "--no-recursion", "--null", "--files-from=-",
  ];
  const extractArgs = ["--extract", "--file=-", `--directory=${options.toDir}`, "--same-permissions", "--same-owner", "--numeric-owner"];
  return new Promise((resolve, reject) => {
    const create = spawn("tar", createArgs, { stdio: ["pipe", "pipe", "pipe"] });
    // The archive goes straight from one tar to the other through the pipe, not through Node.
    const extract = spawn("tar", extractArgs, { stdio: [create.stdout, "ignore", "pipe"] });
    let stderr = "";
    let pending = 2;
    let failed = false;
    const fail = (message: string) => {
      if (failed) return;
      failed = true;
      create.kill("SIGKILL");
      extract.kill("SIGKILL");
      reject(new BuildStepError(`copying ${options.paths.length} files failed: ${message}`));
    };
    const done = (code: number | null) => {
      if (code !== 0) return fail(stderr.trim() || `tar exited with ${code}`);
      if (--pending === 0) resolve();
    };
    for (const child of [create, extract]) {
      child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      child.once("error", (error) => fail(`cannot run tar: ${error.message}`));
      child.once("exit", done);
    }
    // Node's end of the pipe is not needed once the extracting tar holds it.
    create.stdout.destroy();
    create.stdin.end(options.paths.map((path) => `${path}\0`).join(""));
  });
}
