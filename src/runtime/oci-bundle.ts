import { spawn, execFile, type StdioOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { SandboxError } from "./errors.ts";
import type { SandboxResult, SandboxRunOptions } from "./sandbox.ts";
import type { SeccompProfile } from "./seccomp.ts";
import { planSandbox, type SandboxPlan, type SandboxSpec } from "./spec.ts";

/** The subset of the OCI runtime spec (config.json) that tsbuild writes. */
export interface OciConfig {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[]; umask?: number };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<"bounding" | "effective" | "permitted" | "inheritable" | "ambient", string[]>;
    rlimits?: Array<{ type: string; soft: number; hard: number }>;
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: Array<{ destination: string; type: string; source: string; options: string[] }>;
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: SeccompProfile;
    resources: {
      devices: Array<{ allow: boolean; access: string }>;
      memory?: { limit: number };
      cpu?: { quota: number; period: number };
      pids?: { limit: number };
    };
    cgroupsPath?: string;
  };
}

const cap = (names: string[]): string[] => names.map((n) => `CAP_${n}`);

/**
 * The plan as an OCI runtime config. Differences runc/crun make themselves:
 * the default device nodes and /dev symlinks, `lo` up in a new network
 * namespace. `etcFilePaths` are the host files bound over /etc/hosts etc.
 */
export function toOciConfig(plan: SandboxPlan, etcFilePaths: string[], cgroupsPath?: string): OciConfig {
  const namespaces: OciConfig["linux"]["namespaces"] = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if (plan.netns.kind === "new") namespaces.push({ type: "network" });
  else if (plan.netns.kind === "path") namespaces.push({ type: "network", path: plan.netns.path });
  namespaces.push({ type: "cgroup" });

  const mounts = plan.mounts.map((m) => ({ destination: m.destination, type: m.type, source: m.source, options: [...m.options] }));
  plan.etcFiles.forEach((f, i) => {
    const source = etcFilePaths[i];
    if (source === undefined) throw new Error(`no host file for ${f.destination}`);
    mounts.push({ destination: f.destination, type: "bind", source, options: ["rbind", f.readonly ? "ro" : "rw"] });
  });

  const user: OciConfig["process"]["user"] = { uid: plan.uid, gid: plan.gid, umask: plan.umask };
  if (plan.additionalGids.length > 0) user.additionalGids = [...plan.additionalGids];
  const config: OciConfig = {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user,
      args: [...plan.args],
      env: [...plan.env],
      cwd: plan.cwd,
      capabilities: {
        bounding: cap(plan.capabilities.bounding),
        effective: cap(plan.capabilities.effective),
        permitted: cap(plan.capabilities.permitted),
        inheritable: cap(plan.capabilities.inheritable),
        ambient: cap(plan.capabilities.ambient),
      },
      noNewPrivileges: plan.noNewPrivileges,
    },
    root: { path: plan.rootfs, readonly: plan.readonlyRootfs },
    hostname: plan.hostname,
    mounts,
    linux: {
      namespaces,
      maskedPaths: [...plan.maskedPaths],
      readonlyPaths: [...plan.readonlyPaths],
      resources: { devices: [{ allow: false, access: "rwm" }] },
    },
  };
  if (plan.rlimits.length > 0) {
    config.process.rlimits = plan.rlimits.map((r) => ({
      type: r.type.toUpperCase().startsWith("RLIMIT_") ? r.type.toUpperCase() : `RLIMIT_${r.type.toUpperCase()}`,
      soft: r.soft,
      hard: r.hard,
    }));
  }
  if (plan.seccomp) config.linux.seccomp = plan.seccomp;
  if (cgroupsPath) config.linux.cgroupsPath = cgroupsPath;
  if (plan.cgroup) {
    const r = config.linux.resources;
    if (plan.cgroup.memoryBytes !== undefined) r.memory = { limit: plan.cgroup.memoryBytes };
    if (plan.cgroup.cpuQuotaUs !== undefined) r.cpu = { quota: plan.cgroup.cpuQuotaUs, period: plan.cgroup.cpuPeriodUs };
    if (plan.cgroup.pidsLimit !== undefined) r.pids = { limit: plan.cgroup.pidsLimit };
  }
  return config;
}

/**
 * Writes `spec` as an OCI runtime bundle: `dir/config.json` (root.path points
 * at the spec's rootfs, not a copy) plus the /etc files it binds.
 */
export async function writeOciBundle(dir: string, spec: SandboxSpec, options: { cgroupsPath?: string } = {}): Promise<OciConfig> {
  const plan = planSandbox(spec);
  if (plan.init) {
    throw new SandboxError("INVALID_SPEC", "process.init is not available with an OCI runtime bundle", {
      hint: "the command is PID 1 under runc/crun; run an init (e.g. tini) as the command instead",
    });
  }
  await mkdir(dir, { recursive: true });
  const etcFilePaths: string[] = [];
  for (const f of plan.etcFiles) {
    const p = join(dir, `etc${f.destination.replaceAll("/", "_")}`);
    await writeFile(p, f.content, { mode: 0o644 });
    etcFilePaths.push(p);
  }
  const config = toOciConfig(plan, etcFilePaths, options.cgroupsPath);
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  return config;
}

export type OciRuntime = "runc" | "crun";

function runQuiet(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve) => {
    execFile(cmd, args, () => resolve());
  });
}

/** The runtime's own failure to start the container, from its stderr (runc logs `level=error msg="..."`, crun prints `crun: ...`). */
function runtimeStartError(runtime: OciRuntime, stderr: string): string | undefined {
  const runc = /level=error msg="((?:[^"\\]|\\.)*)"/.exec(stderr);
  if (runc?.[1]) return runc[1].replace(/\\"/g, '"');
  const crun = new RegExp(`^${runtime}: (.*)$`, "m").exec(stderr);
  return crun?.[1];
}

function signalName(n: number): NodeJS.Signals | undefined {
  for (const [name, num] of Object.entries(osConstants.signals)) if (num === n) return name as NodeJS.Signals;
  return undefined;
}

/**
 * Runs `spec` with runc or crun (`<runtime> run --bundle`), the reference
 * against which the native sandbox is compared. The bundle and the runtime's
 * state live in a temporary directory removed afterwards.
 */
export async function runWithOciRuntime(
  runtime: OciRuntime,
  spec: SandboxSpec,
  options: Omit<SandboxRunOptions, "helper"> = {},
): Promise<SandboxResult> {
  const base = await mkdtemp(join(tmpdir(), `tsbuild-${runtime}-`));
  const bundle = join(base, "bundle");
  const state = join(base, "state");
  const id = `tsbuild-${randomBytes(8).toString("hex")}`;
  const warnings: string[] = [];
  try {
    const parent = spec.cgroup?.parent?.replace(/^\/+|\/+$/g, "") || "tsbuild";
    await writeOciBundle(bundle, spec, { cgroupsPath: `/${parent}/${id}` });
    await mkdir(state, { recursive: true });
    const mode = (t: unknown): "pipe" | "inherit" | "ignore" => (t === undefined || t === "ignore" ? "ignore" : t === "inherit" ? "inherit" : "pipe");
    // stderr is always piped: the runtime's own start errors are read from it
    const stdio: StdioOptions = [mode(options.stdin), mode(options.stdout), options.stderr === "inherit" ? "inherit" : "pipe"];
    if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new Error("aborted");
    const t0 = performance.now();
    const child = spawn(runtime, ["--root", state, "run", "--bundle", bundle, id], { stdio, detached: true });
    if (options.stdin && typeof options.stdin !== "string" && child.stdin) (options.stdin as Readable).pipe(child.stdin);
    if (options.stdout && typeof options.stdout !== "string" && child.stdout) child.stdout.pipe(options.stdout, { end: false });
    let stderrTail = "";
    const userStderr = options.stderr && typeof options.stderr !== "string" ? options.stderr : undefined;
    child.stderr?.on("data", (d: Buffer) => {
      stderrTail = (stderrTail + d.toString("utf8")).slice(-8192);
      userStderr?.write(d);
    });
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      void runQuiet(runtime, ["--root", state, "kill", id, "KILL"]).then(() => child.kill("SIGKILL"));
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const { code, sig } = await new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve, reject) => {
      child.once("error", (e) => {
        const notFound = (e as NodeJS.ErrnoException).code === "ENOENT";
        reject(
          new SandboxError(notFound ? "RUNTIME_NOT_FOUND" : "START_FAILED", `cannot run ${runtime}: ${e.message}`, {
            hint: notFound ? `install it (Debian package ${runtime})` : undefined,
            cause: e,
          }),
        );
      });
      child.once("close", (c, s) => resolve({ code: c, sig: s }));
    });
    options.signal?.removeEventListener("abort", onAbort);
    const durationMs = performance.now() - t0;
    if (aborted && options.signal) {
      throw options.signal.reason instanceof Error ? options.signal.reason : new Error("aborted");
    }
    const result: SandboxResult = { exitCode: code ?? 128 + (sig ? osConstants.signals[sig] : 0), warnings, createdPaths: [], durationMs };
    const startError = runtimeStartError(runtime, stderrTail);
    if (code === 1 && startError) {
      // as Docker maps them: not found 127, cannot execute 126, anything else 125
      result.error = startError;
      result.exitCode = /executable file not found|no such file or directory/i.test(startError)
        ? 127
        : /permission denied|exec format error|is a directory/i.test(startError)
          ? 126
          : 125;
      return result;
    }
    if (sig) result.signal = sig;
    else if (code !== null && code > 128 && code < 128 + 65) {
      const name = signalName(code - 128);
      if (name) result.signal = name;
    }
    return result;
  } finally {
    await runQuiet(runtime, ["--root", state, "delete", "--force", id]);
    await rm(base, { recursive: true, force: true });
  }
}
