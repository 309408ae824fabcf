import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { utimes } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { freshDirs } from "../../fresh-dir.ts";

export { churnFileContent } from "./churn-content.ts";

/** A new empty directory, removed after the test file. */
export const freshDir = freshDirs("store");

export interface Worker {
  child: ChildProcess;
  /** Resolves with the first message of that event (or rejects if the worker exits first). */
  next(event: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  stderr(): string;
}

const workerScript = join(import.meta.dirname, "worker.ts");

/** Starts worker.ts in its own node process (another "tsbuild" sharing the root). */
export function startWorker(args: string[]): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", workerScript, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const messages: Record<string, unknown>[] = [];
  const waiters: { event: string; resolve: (message: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const message = JSON.parse(line) as Record<string, unknown>;
    messages.push(message);
    for (const waiter of [...waiters]) {
      if (waiter.event === message.event) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(message);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return {
    child,
    exited,
    stderr: () => stderr,
    next: (event) =>
      new Promise((resolve, reject) => {
        const already = messages.find((message) => message.event === event);
        if (already !== undefined) return resolve(already);
        waiters.push({ event, resolve });
        void exited.then((code) => reject(new Error(`worker exited (${String(code)}) before "${event}": ${stderr}`)));
      }),
  };
}

/** Kills with SIGKILL and waits until the process is reaped (a zombie still looks alive). */
export async function killHard(worker: Worker): Promise<void> {
  worker.child.kill("SIGKILL");
  await worker.exited;
}

/** Pretends an item was last used `ageMs` ago. */
export async function backdate(path: string, ageMs: number): Promise<void> {
  const when = new Date(Date.now() - ageMs);
  await utimes(path, when, when);
}

/** Mounts a tmpfs (root only); false where mounting is not allowed. */
export function mountTmpfs(dir: string, options: string): boolean {
  return spawnSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]).status === 0;
}

export function unmount(dir: string): void {
  spawnSync("umount", [dir]);
}
