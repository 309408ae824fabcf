/**
 * Runs the network's programs (unshare, umount, the CNI plugins, iptables)
 * from a worker thread. Spawning a program forks the whole Node process: its
 * page tables are copied while the spawning thread waits, 1-2 ms each time,
 * and a RUN step on the default network runs four programs. From a worker,
 * those forks no longer stop the event loop that drives the build (the
 * step's own mounts and sandbox). Without worker threads, programs are
 * spawned from the calling thread.
 */
import { spawn } from "node:child_process";
import { Worker } from "node:worker_threads";

export interface ProgramOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to the program's stdin (then closed). */
  input?: string;
  /** SIGKILL after this long; default none. */
  timeoutMs?: number;
}

export interface ProgramOutput {
  /** Exit status; null when killed by a signal or never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Could not start (`code` "ENOENT" when not installed), or killed for taking too long. */
  error?: Error & { code?: string };
}

interface Job {
  id: number;
  command: string;
  args: string[];
  options: ProgramOptions & { timeoutMessage?: string };
}

interface Reply {
  id: number;
  output: Omit<ProgramOutput, "error"> & { error?: { message: string; code?: string } };
}

/** Runs one program here (the fallback without a worker). The worker's copy below does the same. */
function runHere(command: string, args: string[], options: ProgramOptions, done: (output: Reply["output"]) => void): void {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let failure: { message: string; code?: string } | undefined;
  const child = spawn(command, args, { env: options.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
  const timeoutMs = options.timeoutMs;
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          failure = { message: timeoutMessage(timeoutMs) };
          child.kill("SIGKILL");
        }, timeoutMs);
  child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
  child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
  child.stdin.on("error", () => undefined); // a program that exits without reading its input
  child.on("error", (error: Error & { code?: string }) => {
    failure ??= { message: error.message, ...(error.code ? { code: error.code } : {}) };
  });
  child.on("close", (code, signal) => {
    if (timer) clearTimeout(timer);
    done({ code, signal, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), ...(failure ? { error: failure } : {}) });
  });
  child.stdin.end(options.input ?? "");
}

function timeoutMessage(ms: number): string {
  return `no answer after ${ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`}`;
}

// Plain JavaScript: the worker evaluates it as it is (no bundler, no TypeScript).
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { spawn } = require("node:child_process");
parentPort.on("message", ({ id, command, args, options }) => {
  const out = [];
  const err = [];
  let failure;
  const done = (output) => parentPort.postMessage({ id, output });
  const child = spawn(command, args, { env: options.env, stdio: ["pipe", "pipe", "pipe"] });
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
    failure = { message: options.timeoutMessage };
    child.kill("SIGKILL");
  }, options.timeoutMs);
  child.stdout.on("data", (chunk) => out.push(chunk));
  child.stderr.on("data", (chunk) => err.push(chunk));
  child.stdin.on("error", () => undefined);
  child.on("error", (error) => {
    failure ??= error.code ? { message: error.message, code: error.code } : { message: error.message };
  });
  child.on("close", (code, signal) => {
    if (timer) clearTimeout(timer);
    done({ code, signal, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), ...(failure ? { error: failure } : {}) });
  });
  child.stdin.end(options.input ?? "");
});
`;

let worker: Worker | undefined;
let workerFailed = false;
const waiting = new Map<number, (output: Reply["output"]) => void>();
let nextId = 0;

function startWorker(): Worker | undefined {
  if (worker || workerFailed || process.env.XNOWORKER) return worker;
  try {
    worker = new Worker(WORKER_SOURCE, { eval: true, env: process.env, stdout: false, stderr: false });
  } catch {
    workerFailed = true;
    return undefined;
  }
  worker.on("message", (reply: Reply) => {
    const resolve = waiting.get(reply.id);
    waiting.delete(reply.id);
    // an idle worker must not keep the process alive
    if (waiting.size === 0) worker?.unref();
    resolve?.(reply.output);
  });
  worker.on("error", () => undefined);
  worker.on("exit", () => {
    // the worker died: what it was running is lost; run those jobs (and later ones) from this thread
    worker = undefined;
    workerFailed = true;
    const pending = [...waiting.values()];
    waiting.clear();
    for (const resolve of pending) resolve({ code: null, signal: null, stdout: "", stderr: "", error: { message: "the program runner stopped" } });
  });
  worker.unref();
  return worker;
}

function toOutput(raw: Reply["output"]): ProgramOutput {
  const { error, ...rest } = raw;
  if (!error) return rest;
  const made = new Error(error.message) as Error & { code?: string };
  if (error.code !== undefined) made.code = error.code;
  return { ...rest, error: made };
}

/** Runs a program to its end and collects its output; never rejects (see `error`). */
export function runProgram(command: string, args: string[], options: ProgramOptions = {}): Promise<ProgramOutput> {
  return new Promise((resolve) => {
    const runner = startWorker();
    if (!runner) {
      runHere(command, args, options, (output) => resolve(toOutput(output)));
      return;
    }
    const id = nextId++;
    waiting.set(id, (output) => resolve(toOutput(output)));
    runner.ref();
    const timeout = options.timeoutMs === undefined ? {} : { timeoutMessage: timeoutMessage(options.timeoutMs) };
    runner.postMessage({ id, command, args, options: { ...options, ...timeout, env: { ...(options.env ?? process.env) } } } satisfies Job);
  });
}
