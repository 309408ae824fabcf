import { capabilityMask } from "./capabilities.ts";
import type { SeccompAction, SeccompProfile } from "./seccomp.ts";
import type { SandboxPlan } from "./spec.ts";

/** The record format version the helper reads (native/README.md). */
export const NATIVE_SPEC_VERSION = "1";

export interface NativeSpecExtras {
  /** Host files holding the plan's etcFiles, in the same order. */
  etcFilePaths: string[];
  /** cgroup path relative to each hierarchy's root, e.g. `tsbuild/<id>`. */
  cgroupName?: string;
  /** File caching the compiled seccomp program (named after a hash of the rules). */
  seccompCache?: string;
}

function mask(names: Iterable<string>): string {
  return capabilityMask(names).toString(16);
}

function seccompAction(action: SeccompAction): string {
  return action.replace(/^SCMP_ACT_/, "").toLowerCase();
}

function seccompRecords(profile: SeccompProfile, push: (...fields: string[]) => void): void {
  const defaultErrno = profile.defaultErrnoRet ?? 1;
  push("seccomp-default", seccompAction(profile.defaultAction), String(defaultErrno));
  for (const arch of profile.architectures) push("seccomp-arch", arch.replace(/^SCMP_ARCH_/, "").toLowerCase());
  for (const rule of profile.syscalls) {
    const errno = String(rule.errnoRet ?? 1);
    const conditions = (rule.args ?? [])
      .map((a) => `${a.index}:${a.op.replace(/^SCMP_CMP_/, "")}:${a.value}:${a.valueTwo ?? 0}`)
      .join(";");
    for (const name of rule.names) push("seccomp-rule", seccompAction(rule.action), errno, name, conditions);
  }
}

/**
 * Serializes a plan for native/build/tsbuild-sandbox: a sequence of records,
 * each a key followed by a fixed number of fields, every string terminated by
 * a NUL byte; the last record is `end`.
 */
export function encodeNativeSpec(plan: SandboxPlan, extras: NativeSpecExtras): Buffer {
  const parts: string[] = [];
  const push = (...fields: string[]): void => {
    for (const f of fields) {
      if (f.includes("\0")) throw new Error(`spec field contains a NUL byte: ${JSON.stringify(f)}`);
      parts.push(f);
    }
  };
  push("version", NATIVE_SPEC_VERSION);
  push("rootfs", plan.rootfs);
  push("rootfs-readonly", plan.readonlyRootfs ? "1" : "0");
  for (const a of plan.args) push("arg", a);
  for (const e of plan.env) push("env", e);
  push("cwd", plan.cwd);
  push("uid", String(plan.uid));
  push("gid", String(plan.gid));
  for (const g of plan.additionalGids) push("group", String(g));
  push("umask", plan.umask.toString(8));
  push("hostname", plan.hostname);
  if (plan.netns.kind === "host") push("netns", "host");
  else if (plan.netns.kind === "path") push("netns", plan.netns.path);
  else push("netns", "new");
  push("loopback", plan.netns.kind === "new" ? "1" : "0");
  push("no-new-privileges", plan.noNewPrivileges ? "1" : "0");
  push("init", plan.init ? "1" : "0");
  const c = plan.capabilities;
  push("caps", mask(c.bounding), mask(c.effective), mask(c.permitted), mask(c.inheritable), mask(c.ambient));
  for (const r of plan.rlimits) {
    const v = (n: number): string => (n < 0 || !Number.isFinite(n) ? "unlimited" : String(Math.floor(n)));
    push("rlimit", r.type, v(r.soft), v(r.hard));
  }

  // /dev's tmpfs comes second in the standard mounts: the device binds follow it.
  for (const m of plan.mounts) {
    push("mount", m.type, m.source, m.destination, m.options.join(","));
    if (m.destination === "/dev" && m.type === "tmpfs") {
      for (const d of plan.devices) push("mount", "bind", d, d, "bind,nosuid,noexec");
    }
  }
  plan.etcFiles.forEach((f, i) => {
    const source = extras.etcFilePaths[i];
    if (source === undefined) throw new Error(`no host file for ${f.destination}`);
    push("mount", "bind", source, f.destination, f.readonly ? "bind,ro" : "bind");
  });
  for (const l of plan.devSymlinks) push("symlink", l.target, l.path);
  for (const p of plan.maskedPaths) push("mask", p);
  for (const p of plan.readonlyPaths) push("readonly", p);
  if (plan.seccomp) {
    seccompRecords(plan.seccomp, push);
    if (extras.seccompCache) push("seccomp-cache", extras.seccompCache);
  }
  if (plan.cgroup && extras.cgroupName) {
    push("cgroup", extras.cgroupName);
    if (plan.cgroup.memoryBytes !== undefined) push("cgroup-memory", String(plan.cgroup.memoryBytes));
    if (plan.cgroup.cpuQuotaUs !== undefined) push("cgroup-cpu", String(plan.cgroup.cpuQuotaUs), String(plan.cgroup.cpuPeriodUs));
    if (plan.cgroup.pidsLimit !== undefined) push("cgroup-pids", String(plan.cgroup.pidsLimit));
  }
  push("end");
  return Buffer.from(parts.join("\0") + "\0", "utf8");
}

/** A record of the helper's status channel. */
export interface StatusRecord {
  key: string;
  value: string;
}

/** Parses the status channel: `key\0value\0` pairs. */
export function parseStatus(buf: Buffer): StatusRecord[] {
  const fields = buf.toString("utf8").split("\0");
  const out: StatusRecord[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) out.push({ key: fields[i] ?? "", value: fields[i + 1] ?? "" });
  return out;
}
