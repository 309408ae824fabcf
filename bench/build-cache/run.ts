/** Running commands: timed (the measurement) and untimed (setup, cleanup, probes). */
import { spawn } from "node:child_process";

export interface Command {
  cmd: string;
  args: string[];
  env?: Record<string, string>;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  /** Wall clock from spawn to exit, in milliseconds. */
  ms: number;
}

export class CommandError extends Error {
  constructor(
    readonly command: Command,
    readonly result: RunResult,
  ) {
    const status = result.signal === null ? `exit code ${result.code}` : `signal ${result.signal}`;
    super(`\`${render(command)}\` failed (${status}):\n${tail(result.output, 20)}`);
  }
}

/**
 * Runs a command to completion and measures its wall-clock time. Output (stdout and stderr
 * together) is collected, never shown live: drawing progress on this terminal would be
 * part of the measurement.
 */
export function run(command: Command, options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(command.cmd, command.args, {
      env: { ...process.env, ...command.env },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: options.timeoutMs ?? 10 * 60_000,
    });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      resolve({ code, signal, output: Buffer.concat(chunks).toString("utf8"), ms });
    });
  });
}

/** Runs a command and fails (with its output) unless it exits 0. */
export async function runChecked(command: Command, options: { timeoutMs?: number } = {}): Promise<RunResult> {
  const result = await run(command, options);
  if (result.code !== 0) throw new CommandError(command, result);
  return result;
}

/** Whether a command exists and exits 0 (for probes such as `docker info`). */
export async function succeeds(command: Command, timeoutMs = 30_000): Promise<boolean> {
  try {
    return (await run(command, { timeoutMs })).code === 0;
  } catch {
    return false; // e.g. ENOENT: not installed
  }
}

/** `apt-get install -y PACKAGE`, with `apt-get update` first if the lists are missing or stale. */
export async function aptInstall(name: string): Promise<void> {
  const install: Command = { cmd: "apt-get", args: ["install", "-y", name], env: { DEBIAN_FRONTEND: "noninteractive" } };
  if (await succeeds(install, 10 * 60_000)) return;
  await run({ cmd: "apt-get", args: ["update"] }, { timeoutMs: 10 * 60_000 });
  const result = await run(install, { timeoutMs: 10 * 60_000 }).catch((error: Error) => ({ code: -1, output: error.message }));
  if (result.code !== 0) throw new Error(`could not install ${name}:\n${tail(result.output, 5)}`);
}

export function render(command: Command): string {
  const env = Object.entries(command.env ?? {}).map(([key, value]) => `${key}=${value} `);
  return `${env.join("")}${command.cmd} ${command.args.join(" ")}`;
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}
