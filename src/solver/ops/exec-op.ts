import { chmod, chown, lstat, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Writable } from "node:stream";
import type { ExecMount, ExecOp } from "../../llb/index.ts";
import { defaultHostsFile, resolveUser, runSandbox, runWithOciRuntime, type OciRuntime, type SandboxMount, type SandboxSpec } from "../../runtime/index.ts";
import { NetworkPool, defaultNetworkResolvConf } from "../../runtime/network/index.ts";
import type { CacheMounts } from "../cache-mounts.ts";
import type { LayerInfo, StateRoot } from "../store/index.ts";
import { BuildStepError } from "../errors.ts";
import { runCommand } from "./command.ts";
import { defaultNetworkPool, releaseInBackground } from "./network-releases.ts";
import { mountOverlay, unmount } from "./overlay.ts";

/** A filesystem a RUN --mount reads: layers (a stage or image) or a local directory (the context). */
export type MountSource = { kind: "layers"; layers: readonly LayerInfo[] } | { kind: "directory"; path: string };

export interface ExecContext {
  store: StateRoot;
  /** The layers the command runs on (input 0). */
  base: readonly LayerInfo[];
  /** The filesystem of a mount's `input`. */
  mountSource: (input: number | undefined) => MountSource | undefined;
  /** A secret's value by id, if one was given (--secret). */
  secret: (id: string) => Promise<Buffer | undefined>;
  /** An SSH agent socket by id, if one was given (--ssh). */
  ssh: (id: string) => string | undefined;
  output: { stdout: Writable; stderr: Writable };
  signal: AbortSignal;
  /** Keep the last lines of output for the error message. */
  tail: () => string;
  cacheMounts: CacheMounts;
  /** Our sandbox, or the same spec handed to runc/crun (--runtime). */
  runtime: "tsbuild" | OciRuntime;
}

export interface ExecResult {
  /** The overlay upper directory: the files the command changed, ready to become a layer. */
  upperDir: string;
  /** Scratch directory to remove once the layer is stored. */
  workDir: string;
}

function networkPool(stateDir: string): NetworkPool {
  return defaultNetworkPool(stateDir, () => new NetworkPool({ stateDir, idPrefix: "run" }));
}

/**
 * For the solver, once it knows a RUN step on the default network will run
 * (not cached): attaches that step's namespace while the steps before it
 * (sources, COPY) run. Released with the build's other networks.
 */
export function prepareDefaultNetwork(stateDir: string): void {
  void networkPool(stateDir).warm();
}

/** Runs a RUN step in the sandbox on an overlay of its input layers and returns what it changed. */
export async function runExecOp(op: ExecOp, context: ExecContext): Promise<ExecResult> {
  const workDir = context.store.tempPath("exec");
  const upperDir = join(workDir, "upper");
  const rootfs = join(workDir, "rootfs");
  const mounted: string[] = [];
  const releases: (() => Promise<void>)[] = [];
  const secretsDir = join("/dev/shm", `tsbuild-secrets-${process.pid}-${Date.now()}`);
  // The default network: a fresh namespace per step, attached ahead by the pool while the previous step
  // ran; the build's first step attaches its own while the rootfs is prepared (tens of milliseconds).
  const attaching = op.network === "default" ? networkPool(context.store.dir).take() : undefined;
  attaching?.catch(() => undefined);
  try {
    await mkdir(upperDir, { recursive: true });
    await mountOverlay({ lower: context.base, upperDir, workDir: join(workDir, "work"), target: rootfs, emptyDir: join(workDir, "empty") });
    mounted.push(rootfs);
    // USER is resolved against the stage's own /etc/passwd and /etc/group, at run time.
    const user = await resolveUser(rootfs, op.user === "root" ? "" : op.user);

    const env = [...op.env];
    const mounts: SandboxMount[] = [];
    for (const [index, mount] of op.mounts.entries()) {
      mounts.push(...(await sandboxMount(mount, index, { context, workDir, secretsDir, mounted, env, releases })));
    }
    for (const device of op.devices ?? []) mounts.push({ type: "bind", source: device, destination: device });
    if (op.files && op.files.length > 0) mounts.push(await scriptFiles(op.files, workDir));

    const spec: SandboxSpec = {
      process: { args: op.args, env, cwd: op.cwd, uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
      rootfs,
      hostname: "buildkitsandbox",
      mounts,
      network: op.network,
      security: op.security,
      etc: { resolvConf: await hostResolvConf(), hostname: "buildkitsandbox" },
    };
    const io = { stdout: context.output.stdout, stderr: context.output.stderr, signal: context.signal };
    const network = await attaching;
    if (network) {
      spec.netnsPath = network.netnsPath;
      spec.etc = { ...spec.etc, resolvConf: defaultNetworkResolvConf(spec.etc?.resolvConf ?? ""), hosts: defaultHostsFile("buildkitsandbox") };
    }
    const result = await (context.runtime === "tsbuild" ? runSandbox(spec, io) : runWithOciRuntime(context.runtime, spec, io));
    await removeEtcMountPoints(rootfs, result.createdPaths, op);
    if (result.exitCode !== 0) {
      const reason = result.error ?? `exit code ${result.exitCode}${result.signal ? ` (${result.signal})` : ""}`;
      const tail = context.tail();
      throw new BuildStepError(`the command ${JSON.stringify(op.args.join(" "))} failed: ${reason}${tail ? `\n${tail}` : ""}`, {
        hint: "fix the command; the step's full output is above (or in the log file named below)",
      });
    }
    return { upperDir, workDir };
  } finally {
    try {
      for (const target of mounted.reverse()) await unmount(target);
    } finally {
      // after the rootfs: the namespace's unmount would otherwise contend with the step's own
      if (attaching) releaseInBackground(attaching, context.output.stderr);
    }
    for (const release of releases) await release();
    // only steps with secret mounts make the directory
    if (op.mounts.some((mount) => mount.type === "secret")) await rm(secretsDir, { recursive: true, force: true });
  }
}


interface MountState {
  context: ExecContext;
  workDir: string;
  secretsDir: string;
  mounted: string[];
  env: string[];
  /** Cache mounts to give back when the step ends. */
  releases: (() => Promise<void>)[];
}

async function sandboxMount(mount: ExecMount, index: number, state: MountState): Promise<SandboxMount[]> {
  const { context, workDir } = state;
  switch (mount.type) {
    case "tmpfs":
      return [{ type: "tmpfs", destination: mount.target, ...(mount.size ? { sizeBytes: mount.size } : {}) }];
    case "cache": {
      const { dir, release } = await context.cacheMounts.acquire(mount);
      state.releases.push(release);
      const from = context.mountSource(mount.input);
      if (from && (await isEmptyDir(dir))) await seedCache(from, mount.source ?? "/", dir, workDir, index, state.mounted);
      return [{ type: "bind", source: dir, destination: mount.target, readonly: mount.readonly === true }];
    }
    case "bind": {
      const from = context.mountSource(mount.input);
      if (!from) throw new BuildStepError(`--mount=type=bind,target=${mount.target}: nothing to bind`);
      const source = await viewOf(from, mount.readonly === false, workDir, index, state.mounted);
      return [{ type: "bind", source: join(source, safeRelative(mount.source ?? "/")), destination: mount.target, readonly: mount.readonly !== false }];
    }
    case "secret": {
      const id = mount.id ?? mount.target.split("/").pop() ?? "";
      const value = await context.secret(id);
      if (!value) {
        if (mount.required) throw new BuildStepError(`secret "${id}" is required but was not given`, { hint: `pass it with --secret id=${id},src=FILE` });
        return [];
      }
      if (mount.env) state.env.push(`${mount.env}=${value.toString("utf8")}`);
      if (mount.env && !mount.target) return [];
      // Secrets live on tmpfs outside the state root and are removed right after the step.
      await mkdir(state.secretsDir, { recursive: true, mode: 0o700 });
      const file = join(state.secretsDir, `${index}`);
      await writeFile(file, value, { mode: mount.mode ?? 0o400 });
      await chmod(file, mount.mode ?? 0o400);
      await chown(file, mount.uid ?? 0, mount.gid ?? 0);
      return [{ type: "bind", source: file, destination: mount.target, readonly: true }];
    }
    case "ssh": {
      const id = mount.id ?? "default";
      const socket = context.ssh(id);
      if (!socket) {
        if (mount.required) throw new BuildStepError(`SSH agent "${id}" is required but was not given`, { hint: `pass it with --ssh ${id}` });
        return [];
      }
      // The agent's socket itself is bound in: keys never leave the agent.
      state.env.push(`SSH_AUTH_SOCK=${mount.target}`);
      return [{ type: "bind", source: socket, destination: mount.target, readonly: true }];
    }
  }
}

/** A directory view of a mount source: the directory itself, or an overlay of the layers (a writable one discards its writes). */
async function viewOf(source: MountSource, writable: boolean, workDir: string, index: number, mounted: string[]): Promise<string> {
  if (source.kind === "directory") return source.path;
  const target = join(workDir, `mount-${index}`);
  await mountOverlay({
    lower: source.layers,
    ...(writable ? { upperDir: join(workDir, `mount-${index}-upper`), workDir: join(workDir, `mount-${index}-work`) } : {}),
    target,
    emptyDir: join(workDir, "empty"),
  });
  mounted.push(target);
  return target;
}

async function seedCache(from: MountSource, subdir: string, dir: string, workDir: string, index: number, mounted: string[]): Promise<void> {
  const view = await viewOf(from, false, workDir, index, mounted);
  await runCommand("cp", ["-a", `${join(view, safeRelative(subdir))}/.`, dir]);
}

/** `RUN <<EOF` scripts with a shebang are files under /dev/pipes. */
async function scriptFiles(files: NonNullable<ExecOp["files"]>, workDir: string): Promise<SandboxMount> {
  const dir = join(workDir, "pipes");
  await mkdir(dir, { recursive: true });
  for (const file of files) {
    const host = join(dir, file.path.split("/").pop() ?? "script");
    await writeFile(host, file.data, { mode: file.mode });
    await chmod(host, file.mode);
  }
  return { type: "bind", source: dir, destination: "/dev/pipes", readonly: true };
}

async function hostResolvConf(): Promise<string> {
  return readFile("/etc/resolv.conf", "utf8").catch(() => "nameserver 127.0.0.53\n");
}

function safeRelative(path: string): string {
  return path.split("/").filter((part) => part !== "" && part !== "." && part !== "..").join("/");
}

async function isEmptyDir(dir: string): Promise<boolean> {
  return (await readdir(dir)).length === 0;
}

/**
 * /etc/hosts, /etc/resolv.conf and /etc/hostname are mounted over files the
 * sandbox creates when the image has none: like BuildKit, keep those empty
 * stand-ins out of the layer (RUN --mount targets stay, as in BuildKit).
 */
async function removeEtcMountPoints(rootfs: string, createdPaths: readonly string[], op: ExecOp): Promise<void> {
  const mountTargets = new Set(op.mounts.map((mount) => mount.target));
  for (const path of [...createdPaths].reverse()) {
    if (!path.startsWith("/etc/") || mountTargets.has(path)) continue;
    const host = join(rootfs, path);
    const stats = await lstat(host).catch(() => undefined);
    if (stats?.isFile() && stats.size === 0) await rm(host, { force: true });
  }
}
