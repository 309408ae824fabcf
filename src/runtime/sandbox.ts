import { spawn, type StdioOptions } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { access, mkdir, mkdtemp, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { constants as osConstants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { SandboxError } from "./errors.ts";
import { encodeNativeSpec, parseStatus } from "./native-spec.ts";
import { planSandbox, type SandboxPlan, type SandboxSpec } from "./spec.ts";

export type StdioTarget = Writable | "inherit" | "ignore";

export interface SandboxRunOptions {
  /** Default: nothing (`/dev/null`). */
  stdin?: Readable | "inherit" | "ignore";
  /** Default: discarded. The stream is not ended when the process exits. */
  stdout?: StdioTarget;
  stderr?: StdioTarget;
  /** Aborting kills every process of the sandbox (SIGKILL); the promise then rejects with an AbortError. */
  signal?: AbortSignal;
  /** Path of the helper binary (default: native/build/tsbuild-sandbox, or $TSBUILD_SANDBOX_HELPER). */
  helper?: string;
  /**
   * Where compiled seccomp programs are cached (compiling Docker's profile
   * costs ~10 ms a run). Default /run/tsbuild/seccomp when running as root;
   * false: compile every time.
   */
  seccompCacheDir?: string | false;
}

export interface SandboxResult {
  /** The command's exit status; 128+n when a signal n killed it; 125/126/127 when it could not start. */
  exitCode: number;
  /** Set when a signal killed the command (or the helper). */
  signal?: NodeJS.Signals;
  /** Why the command could not be started (setup or exec failure), as the helper reported it. */
  error?: string;
  /** Warnings of the helper (e.g. cgroup limits that could not be applied). */
  warnings: string[];
  /**
   * Mount points the sandbox had to create inside the root filesystem
   * (e.g. `/proc` in an image without it), parents first. A build removes
   * them from the layer if they are still empty.
   */
  createdPaths: string[];
  /** Wall time from spawning the helper to its exit. */
  durationMs: number;
}

export interface SandboxHandle {
  /** PID of the helper (host PID namespace). */
  readonly pid: number;
  /** Sends a signal to the helper, which forwards TERM/INT/HUP/QUIT/USR1/USR2/WINCH to the command; KILL ends everything. */
  kill(signal?: NodeJS.Signals): void;
  readonly result: Promise<SandboxResult>;
}

const HELPER_RELATIVE = join("native", "build", "tsbuild-sandbox");

let cachedHelper: string | undefined;

/**
 * Finds the compiled helper: `explicit`, else $TSBUILD_SANDBOX_HELPER, else
 * native/build/ above this module (src/ or dist/). Throws HELPER_NOT_BUILT.
 */
export function sandboxHelperPath(explicit?: string): string {
  if (!explicit && cachedHelper) return cachedHelper;
  const fromEnv = explicit ?? process.env["TSBUILD_SANDBOX_HELPER"];
  const candidates: string[] = fromEnv ? [fromEnv] : [];
  if (!fromEnv) {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (;;) {
      candidates.push(join(dir, HELPER_RELATIVE));
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (!explicit) cachedHelper = c;
      return c;
    } catch {
      // next
    }
  }
  const where = fromEnv ?? HELPER_RELATIVE;
  throw new SandboxError("HELPER_NOT_BUILT", `the sandbox helper ${where} is not built: run make -C native (scripts/setup.sh does)`, {
    hint: "building it needs gcc, libc6-dev, make and libseccomp-dev (Debian packages)",
  });
}

function signalName(n: number): NodeJS.Signals | undefined {
  for (const [name, num] of Object.entries(osConstants.signals)) if (num === n) return name as NodeJS.Signals;
  return undefined;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error("the sandboxed process was aborted");
  e.name = "AbortError";
  return e;
}

/** Where a run's cgroup lives in every hierarchy it may have been created in. */
function cgroupDirs(name: string): string[] {
  const roots = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids"];
  return roots.map((r) => join(r, name));
}

/** After a helper that did not exit on its own: kill what is left in the run's cgroup and remove it. */
async function removeCgroup(name: string): Promise<void> {
  for (const dir of cgroupDirs(name)) {
    if (!existsSync(dir)) continue;
    try {
      await writeFile(join(dir, "cgroup.kill"), "1");
    } catch {
      // cgroup v1, or already gone
    }
    for (let i = 0; i < 100; i++) {
      try {
        await rmdir(dir);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EBUSY") break;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }
}

const DEFAULT_SECCOMP_CACHE = "/run/tsbuild/seccomp";
const usableCacheDirs = new Map<string, Promise<boolean>>();

/** A cache directory only this user can write to (a program read from it confines every step). */
async function usableCacheDir(dir: string): Promise<boolean> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await stat(dir);
    return st.isDirectory() && st.uid === process.geteuid?.() && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/** The cache file of a plan's compiled seccomp program: keyed by the rules and the helper build. */
async function seccompCachePath(plan: SandboxPlan, helper: string, option: string | false | undefined): Promise<string | undefined> {
  if (!plan.seccomp || option === false) return undefined;
  const dir = option ?? (process.geteuid?.() === 0 ? DEFAULT_SECCOMP_CACHE : undefined);
  if (!dir) return undefined;
  let ok = usableCacheDirs.get(dir);
  if (!ok) {
    ok = usableCacheDir(dir);
    usableCacheDirs.set(dir, ok);
  }
  if (!(await ok)) return undefined;
  const h = statSync(helper);
  const key = createHash("sha256")
    .update(`${h.size}:${h.mtimeMs}:${h.ino}\n`)
    .update(JSON.stringify(plan.seccomp))
    .digest("hex");
  return join(dir, `${key}.bpf`);
}

function stdioMode(target: StdioTarget | Readable | undefined): "pipe" | "inherit" | "ignore" {
  if (target === undefined || target === "ignore") return "ignore";
  if (target === "inherit") return "inherit";
  return "pipe";
}

/**
 * Starts `spec.process` in a new sandbox (mount, PID, UTS, IPC, cgroup and,
 * unless `network` is `host`, network namespaces) through the native helper.
 */
export function startSandbox(spec: SandboxSpec, options: SandboxRunOptions = {}): SandboxHandle {
  const plan = planSandbox(spec);
  const helper = sandboxHelperPath(options.helper);
  if (options.signal?.aborted) throw abortError(options.signal);

  let pid = 0;
  let child: ReturnType<typeof spawn> | undefined;
  let killedEarly: NodeJS.Signals | undefined;
  const result = run(plan, helper, options, (c) => {
    child = c;
    pid = c.pid ?? 0;
    if (killedEarly) c.kill(killedEarly);
  });
  return {
    get pid() {
      return pid;
    },
    kill(sig: NodeJS.Signals = "SIGTERM") {
      if (child) child.kill(sig);
      else killedEarly = sig;
    },
    result,
  };
}

/** Runs `spec.process` in a new sandbox and resolves with its exit status. */
export async function runSandbox(spec: SandboxSpec, options: SandboxRunOptions = {}): Promise<SandboxResult> {
  return startSandbox(spec, options).result;
}

async function run(
  plan: SandboxPlan,
  helper: string,
  options: SandboxRunOptions,
  started: (c: ReturnType<typeof spawn>) => void,
): Promise<SandboxResult> {
  try {
    await access(plan.rootfs, constants.R_OK | constants.X_OK);
  } catch (e) {
    throw new SandboxError("INVALID_SPEC", `the root filesystem ${plan.rootfs} is not a readable directory`, { cause: e });
  }
  let tmp: string | undefined;
  const etcFilePaths: string[] = [];
  if (plan.etcFiles.length > 0) {
    tmp = await mkdtemp(join(tmpdir(), "tsbuild-sandbox-"));
    for (const f of plan.etcFiles) {
      const p = join(tmp, f.destination.replaceAll("/", "_"));
      await writeFile(p, f.content, { mode: 0o644 });
      etcFilePaths.push(p);
    }
  }
  const cgroupName = plan.cgroup ? `${plan.cgroup.parent}/${randomBytes(8).toString("hex")}` : undefined;
  const seccompCache = await seccompCachePath(plan, helper, options.seccompCacheDir);
  const encoded = encodeNativeSpec(plan, {
    etcFilePaths,
    ...(cgroupName ? { cgroupName } : {}),
    ...(seccompCache ? { seccompCache } : {}),
  });

  const stdio: StdioOptions = [
    stdioMode(options.stdin),
    stdioMode(options.stdout),
    stdioMode(options.stderr),
    "pipe",
    "pipe",
  ];
  if (options.signal?.aborted) {
    if (tmp) await rm(tmp, { recursive: true, force: true });
    throw abortError(options.signal);
  }
  const t0 = performance.now();
  const child = spawn(helper, ["--spec-fd", "3", "--status-fd", "4", "--parent-pid", String(process.pid)], {
    stdio,
    detached: true,
    env: {},
  });
  started(child);

  const status: Buffer[] = [];
  const specPipe = child.stdio[3] as Writable | null;
  const statusPipe = child.stdio[4] as Readable | null;
  specPipe?.on("error", () => {
    // the helper died before reading everything: its exit status says why
  });
  specPipe?.end(encoded);
  statusPipe?.on("data", (d: Buffer) => status.push(d));
  if (options.stdin && typeof options.stdin !== "string" && child.stdin) {
    child.stdin.on("error", () => {});
    options.stdin.pipe(child.stdin);
  }
  if (options.stdout && typeof options.stdout !== "string" && child.stdout) child.stdout.pipe(options.stdout, { end: false });
  if (options.stderr && typeof options.stderr !== "string" && child.stderr) child.stderr.pipe(options.stderr, { end: false });

  let aborted = false;
  const onAbort = (): void => {
    aborted = true;
    child.kill("SIGKILL");
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });

  try {
    const { code, sig } = await new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve, reject) => {
      child.once("error", (e) =>
        reject(new SandboxError("START_FAILED", `cannot start the sandbox helper ${helper}: ${e.message}`, { cause: e })),
      );
      child.once("close", (code, sig) => resolve({ code, sig }));
    });
    const durationMs = performance.now() - t0;
    const records = parseStatus(Buffer.concat(status));
    const res: SandboxResult = { exitCode: 0, warnings: [], createdPaths: [], durationMs };
    let reportedExit = false;
    for (const r of records) {
      if (r.key === "created" || r.key === "created-cwd") res.createdPaths.push(r.value);
      else if (r.key === "warning") res.warnings.push(r.value);
      else if (r.key === "error") res.error = r.value;
      else if (r.key === "signal") {
        const name = signalName(Number(r.value));
        if (name) res.signal = name;
      } else if (r.key === "exit") reportedExit = true;
    }
    if (sig) {
      // the helper itself was killed: its namespace and everything in it went with it
      res.signal = sig;
      res.exitCode = 128 + (osConstants.signals[sig] ?? 0);
      if (cgroupName) await removeCgroup(cgroupName);
    } else {
      res.exitCode = code ?? 0;
      if (!reportedExit && res.error === undefined && code !== 0) {
        res.error = `the sandbox helper exited with status ${code}`;
      }
    }
    if (aborted && options.signal) throw abortError(options.signal);
    return res;
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}
