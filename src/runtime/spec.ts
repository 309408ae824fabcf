import { posix } from "node:path";
import {
  DEFAULT_CAPABILITIES,
  hostCapabilities,
  normalizeCapability,
  type CapabilityName,
} from "./capabilities.ts";
import { SandboxError } from "./errors.ts";
import { defaultSeccompProfile, type SeccompProfile } from "./seccomp.ts";

/** `PATH` of a process whose environment sets none (Docker's and BuildKit's default). */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * `none`: a new network namespace with only `lo` (up).
 * `host`: the caller's network namespace.
 * `default`: for now the same as `none` (a new namespace with `lo`); outbound
 * access through a bridge + NAT (CNI) is not wired yet. A caller that prepared
 * a namespace itself passes `netnsPath`.
 */
export type NetworkMode = "none" | "host" | "default";

/** `sandbox`: Docker's default confinement. `insecure`: `--security=insecure` (all capabilities, no seccomp, no masked paths). */
export type SecurityMode = "sandbox" | "insecure";

export interface Rlimit {
  /** `RLIMIT_NOFILE`, `NOFILE` or `nofile`. */
  type: string;
  soft: number;
  hard: number;
}

export interface SandboxProcessSpec {
  /** argv; args[0] is looked up in the `PATH` of `env` inside the root filesystem. */
  args: string[];
  /** `KEY=value` entries. `PATH` is added (DEFAULT_PATH) when missing. */
  env: string[];
  /** Absolute; created (owned by root) when missing. Default `/`. */
  cwd?: string;
  uid: number;
  gid: number;
  additionalGids?: number[];
  /** `prctl(PR_SET_NO_NEW_PRIVS)`: off by default, as in Docker. */
  noNewPrivileges?: boolean;
  rlimits?: Rlimit[];
  /** Default 0o022. */
  umask?: number;
  /**
   * false (default, as BuildKit's RUN): the command is PID 1 of its PID
   * namespace. true: a minimal init is PID 1 (forwards signals, reaps
   * zombies, exits with the command's status), like `docker run --init`.
   */
  init?: boolean;
  /** Capabilities added to / removed from the default set (`--cap-add`/`--cap-drop`), e.g. `NET_ADMIN` or `ALL`. */
  capAdd?: string[];
  capDrop?: string[];
}

/** An extra mount: a bind of a host path, or a fresh tmpfs. */
export type SandboxMount =
  | { type: "bind"; source: string; destination: string; readonly?: boolean; recursive?: boolean }
  | { type: "tmpfs"; destination: string; sizeBytes?: number; mode?: number; readonly?: boolean };

export interface CgroupLimits {
  /** memory.max / memory.limit_in_bytes */
  memoryBytes?: number;
  /** CPUs as a fraction (1.5 = one and a half cores): quota = cpus × period. */
  cpus?: number;
  /** Default 100000 µs. */
  cpuPeriodUs?: number;
  /** pids.max */
  pidsLimit?: number;
  /** Parent of the per-run cgroup, relative to each hierarchy's root (`--cgroup-parent`). Default `tsbuild`. */
  parent?: string;
}

/** Contents of the files bind-mounted over the root filesystem's own. */
export interface EtcFiles {
  hosts?: string;
  resolvConf?: string;
  hostname?: string;
  /** Mount them read-only (BuildKit does for RUN steps). Default true. */
  readonly?: boolean;
}

export interface SandboxSpec {
  process: SandboxProcessSpec;
  /** A directory the caller prepared (usually an overlayfs merged dir). */
  rootfs: string;
  readonlyRootfs?: boolean;
  hostname: string;
  /** Mounted after the standard ones (/proc, /dev, /sys...), in order. */
  mounts?: SandboxMount[];
  network: NetworkMode;
  /** Join this network namespace (e.g. /run/netns/x) instead of creating one; ignored for `host`. */
  netnsPath?: string;
  security: SecurityMode;
  /** Limits; a cgroup is created per run only when this is given. */
  cgroup?: CgroupLimits;
  etc?: EtcFiles;
}

/** A mount in the order the sandbox performs it (OCI-like). */
export interface PlannedMount {
  type: string;
  source: string;
  destination: string;
  options: string[];
}

export interface EtcFilePlan {
  destination: string;
  content: string;
  readonly: boolean;
}

/**
 * The spec resolved into the exact list of things a runtime does: the one
 * place where the sandbox policy (Docker's defaults) lives. Both our helper
 * and runc/crun are driven from it.
 */
export interface SandboxPlan {
  rootfs: string;
  readonlyRootfs: boolean;
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  umask: number;
  noNewPrivileges: boolean;
  init: boolean;
  rlimits: Rlimit[];
  hostname: string;
  /** `new` namespace, the `host`'s, or a path to join. */
  netns: { kind: "new" } | { kind: "host" } | { kind: "path"; path: string };
  capabilities: {
    bounding: CapabilityName[];
    effective: CapabilityName[];
    permitted: CapabilityName[];
    inheritable: CapabilityName[];
    ambient: CapabilityName[];
  };
  /** Standard mounts (/proc, /dev, ...), then the spec's. Device binds are separate. */
  mounts: PlannedMount[];
  /** Host device nodes bound into the new /dev (runc creates these itself). */
  devices: string[];
  /** Symlinks created in the new /dev (runc creates these itself). */
  devSymlinks: Array<{ target: string; path: string }>;
  etcFiles: EtcFilePlan[];
  maskedPaths: string[];
  readonlyPaths: string[];
  seccomp?: SeccompProfile;
  cgroup?: { parent: string; memoryBytes?: number; cpuQuotaUs?: number; cpuPeriodUs: number; pidsLimit?: number };
}

/** Docker's masked paths: unreadable (a /dev/null bind, or an empty read-only tmpfs for directories). */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  "/proc/asound",
  "/proc/acpi",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];

/** Docker's read-only paths. */
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

/** Device nodes every container gets (bound from the host's). */
export const DEFAULT_DEVICES: readonly string[] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

const DEV_SYMLINKS: ReadonlyArray<{ target: string; path: string }> = [
  { target: "/proc/self/fd", path: "/dev/fd" },
  { target: "/proc/self/fd/0", path: "/dev/stdin" },
  { target: "/proc/self/fd/1", path: "/dev/stdout" },
  { target: "/proc/self/fd/2", path: "/dev/stderr" },
  { target: "pts/ptmx", path: "/dev/ptmx" },
];

/** The standard mounts of containerd's default spec (what BuildKit's RUN sees). */
export function standardMounts(security: SecurityMode): PlannedMount[] {
  return [
    { type: "proc", source: "proc", destination: "/proc", options: ["nosuid", "noexec", "nodev"] },
    { type: "tmpfs", source: "tmpfs", destination: "/dev", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    {
      type: "devpts",
      source: "devpts",
      destination: "/dev/pts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    { type: "tmpfs", source: "shm", destination: "/dev/shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { type: "mqueue", source: "mqueue", destination: "/dev/mqueue", options: ["nosuid", "noexec", "nodev"] },
    {
      type: "sysfs",
      source: "sysfs",
      destination: "/sys",
      options: ["nosuid", "noexec", "nodev", security === "insecure" ? "rw" : "ro"],
    },
  ];
}

/** BuildKit's /etc/hosts for a sandbox named `hostname`. */
export function defaultHostsFile(hostname: string): string {
  return `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

function fail(message: string, hint?: string): never {
  throw new SandboxError("INVALID_SPEC", message, { hint });
}

function checkString(value: unknown, what: string): string {
  if (typeof value !== "string") fail(`${what} must be a string`);
  if (value.includes("\0")) fail(`${what} contains a NUL byte: ${JSON.stringify(value)}`);
  return value;
}

function checkAbsolute(value: unknown, what: string): string {
  const s = checkString(value, what);
  if (!s.startsWith("/")) fail(`${what} must be an absolute path, not ${JSON.stringify(s)}`);
  return posix.normalize(s).replace(/(.)\/+$/, "$1");
}

function checkId(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xfffffffe) {
    fail(`${what} must be an integer between 0 and 4294967294, not ${String(value)}`);
  }
  return value;
}

function checkLimit(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) fail(`${what} must be a non-negative number`);
  return value;
}

function computeCapabilities(spec: SandboxSpec): CapabilityName[] {
  const available = new Set(hostCapabilities());
  if (spec.security === "insecure") return [...available];
  const set = new Set<CapabilityName>(DEFAULT_CAPABILITIES);
  const expand = (names: string[] | undefined): CapabilityName[] | "ALL" => {
    const out: CapabilityName[] = [];
    for (const n of names ?? []) {
      if (n.toUpperCase() === "ALL") return "ALL";
      try {
        out.push(normalizeCapability(n));
      } catch {
        fail(`unknown capability ${n}`, "capability names are those of capabilities(7), e.g. NET_ADMIN");
      }
    }
    return out;
  };
  const add = expand(spec.process.capAdd);
  if (add === "ALL") for (const c of available) set.add(c);
  else for (const c of add) set.add(c);
  const drop = expand(spec.process.capDrop);
  if (drop === "ALL") set.clear();
  else for (const c of drop) set.delete(c);
  return [...set].filter((c) => available.has(c));
}

/** Validates a spec and resolves it into what a runtime has to do. Throws SandboxError (INVALID_SPEC). */
export function planSandbox(spec: SandboxSpec): SandboxPlan {
  const p = spec.process;
  if (!p || !Array.isArray(p.args) || p.args.length === 0) fail("the process has no command (process.args is empty)");
  const args = p.args.map((a, i) => checkString(a, `process.args[${i}]`));
  const env = (p.env ?? []).map((e, i) => {
    const s = checkString(e, `process.env[${i}]`);
    if (!s.includes("=") || s.startsWith("=")) fail(`process.env[${i}] must look like KEY=value, not ${JSON.stringify(s)}`);
    return s;
  });
  if (!env.some((e) => e.startsWith("PATH="))) env.push(`PATH=${DEFAULT_PATH}`);
  const security = spec.security ?? "sandbox";
  if (security !== "sandbox" && security !== "insecure") fail(`security must be "sandbox" or "insecure", not ${String(security)}`);
  const network = spec.network ?? "default";
  if (!["none", "host", "default"].includes(network)) fail(`network must be "none", "host" or "default", not ${String(network)}`);

  const caps = computeCapabilities(spec);
  const uid = checkId(p.uid, "process.uid");
  const root = uid === 0;
  const hostname = checkString(spec.hostname ?? "", "hostname");
  if (hostname.length > 64) fail(`hostname ${hostname} is longer than 64 characters`);

  const mounts = standardMounts(security);
  for (const [i, m] of (spec.mounts ?? []).entries()) {
    const destination = checkAbsolute(m.destination, `mounts[${i}].destination`);
    if (m.type === "bind") {
      const source = checkAbsolute(m.source, `mounts[${i}].source`);
      const options = [m.recursive === false ? "bind" : "rbind", m.readonly ? "ro" : "rw"];
      mounts.push({ type: "bind", source, destination, options });
    } else if (m.type === "tmpfs") {
      const options = ["nosuid", "nodev", m.readonly ? "ro" : "rw"];
      if (m.sizeBytes !== undefined) options.push(`size=${checkLimit(m.sizeBytes, `mounts[${i}].sizeBytes`)}`);
      options.push(`mode=${(m.mode ?? 0o1777).toString(8)}`);
      mounts.push({ type: "tmpfs", source: "tmpfs", destination, options });
    } else {
      fail(`mounts[${i}].type must be "bind" or "tmpfs"`);
    }
  }

  const etcFiles: EtcFilePlan[] = [];
  const etcReadonly = spec.etc?.readonly ?? true;
  if (spec.etc?.hosts !== undefined) etcFiles.push({ destination: "/etc/hosts", content: spec.etc.hosts, readonly: etcReadonly });
  if (spec.etc?.resolvConf !== undefined) {
    etcFiles.push({ destination: "/etc/resolv.conf", content: spec.etc.resolvConf, readonly: etcReadonly });
  }
  if (spec.etc?.hostname !== undefined) etcFiles.push({ destination: "/etc/hostname", content: spec.etc.hostname, readonly: etcReadonly });

  let cgroup: SandboxPlan["cgroup"];
  if (spec.cgroup) {
    const c = spec.cgroup;
    const period = c.cpuPeriodUs === undefined ? 100_000 : checkLimit(c.cpuPeriodUs, "cgroup.cpuPeriodUs");
    const parent = checkString(c.parent ?? "tsbuild", "cgroup.parent").replace(/^\/+|\/+$/g, "");
    if (!parent || parent.split("/").some((p) => p === "" || p === "." || p === "..")) {
      fail(`cgroup.parent must be a relative cgroup path like tsbuild or ci/builds, not ${JSON.stringify(c.parent)}`);
    }
    cgroup = { parent, cpuPeriodUs: period };
    if (c.memoryBytes !== undefined) cgroup.memoryBytes = Math.floor(checkLimit(c.memoryBytes, "cgroup.memoryBytes"));
    if (c.cpus !== undefined) cgroup.cpuQuotaUs = Math.max(1000, Math.round(checkLimit(c.cpus, "cgroup.cpus") * period));
    if (c.pidsLimit !== undefined) cgroup.pidsLimit = Math.floor(checkLimit(c.pidsLimit, "cgroup.pidsLimit"));
  }

  const netns: SandboxPlan["netns"] =
    network === "host"
      ? { kind: "host" }
      : spec.netnsPath
        ? { kind: "path", path: checkAbsolute(spec.netnsPath, "netnsPath") }
        : { kind: "new" };

  const plan: SandboxPlan = {
    rootfs: checkAbsolute(spec.rootfs, "rootfs"),
    readonlyRootfs: spec.readonlyRootfs ?? false,
    args,
    env,
    cwd: p.cwd ? checkAbsolute(p.cwd, "process.cwd") : "/",
    uid,
    gid: checkId(p.gid, "process.gid"),
    additionalGids: (p.additionalGids ?? []).map((g, i) => checkId(g, `process.additionalGids[${i}]`)),
    umask: p.umask ?? 0o022,
    noNewPrivileges: p.noNewPrivileges ?? false,
    init: p.init ?? false,
    rlimits: (p.rlimits ?? []).map((r) => ({ type: checkString(r.type, "rlimit type"), soft: r.soft, hard: r.hard })),
    hostname,
    netns,
    capabilities: {
      bounding: caps,
      // as in Docker: a non-root user starts with no effective capabilities
      // (execve clears them for uid != 0 anyway)
      effective: root ? caps : [],
      permitted: root ? caps : [],
      inheritable: [],
      ambient: [],
    },
    mounts,
    devices: [...DEFAULT_DEVICES],
    devSymlinks: [...DEV_SYMLINKS],
    etcFiles,
    maskedPaths: security === "insecure" ? [] : [...DEFAULT_MASKED_PATHS],
    readonlyPaths: security === "insecure" ? [] : [...DEFAULT_READONLY_PATHS],
  };
  if (security !== "insecure") plan.seccomp = defaultSeccompProfile(caps);
  if (cgroup) plan.cgroup = cgroup;
  return plan;
}
