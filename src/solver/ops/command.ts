import { spawn } from "node:child_process";

/** A helper command that exited with an error; `stderr` is what it said. */
export class CommandFailedError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** Runs a helper command (mount, umount, cp, setfattr…); rejects with its stderr when it fails. */
export function runCommand(command: string, args: string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...(cwd ? { cwd } : {}) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", (error) => reject(new Error(`cannot run ${command}: ${error.message}`)));
    child.once("exit", (code) => (code === 0 ? resolve(stdout) : reject(new CommandFailedError(`${command} ${args.join(" ")} failed: ${stderr.trim() || `exit ${code}`}`, stderr.trim()))));
  });
}
