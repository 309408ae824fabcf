import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { UserError } from "../../user-error.ts";

/** The Debian package that provides each external command tsbuild may run. */
const DEBIAN_PACKAGES: Record<string, string> = {
  git: "git",
  bzip2: "bzip2",
  xz: "xz-utils",
  zstd: "zstd",
};

/** A command tsbuild needs is not installed. */
export class MissingCommandError extends UserError {
  override readonly name = "MissingCommandError";
  readonly command: string;
  readonly debianPackage: string;
  constructor(command: string, purpose: string) {
    const debianPackage = DEBIAN_PACKAGES[command] ?? command;
    super(`${purpose} needs the "${command}" command, which is not installed`, `install it, e.g. apt-get install ${debianPackage}`);
    this.command = command;
    this.debianPackage = debianPackage;
  }
}

/** A command that ran and failed; its standard error (trimmed) is in the message. */
export class CommandFailedError extends Error {
  override readonly name = "CommandFailedError";
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} ${args.join(" ")} failed (${exitCode === null ? "killed" : `exit code ${exitCode}`})${stderr ? `: ${stderr}` : ""}`);
  }
}

/**
 * Starts `command`; rejects with MissingCommandError (naming the Debian package) if it is
 * not installed. The returned process has already been spawned successfully.
 */
export function startCommand(command: string, args: readonly string[], options: SpawnOptions & { purpose: string }): Promise<ChildProcess> {
  const { purpose, ...spawnOptions } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, spawnOptions);
    const onError = (error: NodeJS.ErrnoException) => {
      reject(error.code === "ENOENT" ? new MissingCommandError(command, purpose) : error);
    };
    child.once("error", onError);
    child.once("spawn", () => {
      child.off("error", onError);
      resolve(child);
    });
  });
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Says what the command is for, in the error when it is missing. */
  purpose: string;
}

/** Runs a command to completion; resolves with its standard output, rejects with CommandFailedError. */
export async function runCommand(command: string, args: readonly string[], options: RunOptions): Promise<string> {
  const child = await startCommand(command, args, {
    purpose: options.purpose,
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  if (exitCode !== 0) throw new CommandFailedError(command, args, exitCode, Buffer.concat(stderr).toString("utf8").trim());
  return Buffer.concat(stdout).toString("utf8");
}
