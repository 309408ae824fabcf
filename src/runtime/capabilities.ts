import { readFileSync } from "node:fs";

/** Linux capability names (without `CAP_`), indexed by their number. */
export const CAPABILITY_NAMES = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
  "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
  "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
  "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
  "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
  "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
] as const;

export type CapabilityName = (typeof CAPABILITY_NAMES)[number];

/**
 * Docker's (and BuildKit's) default set: what a RUN step or a container gets
 * without `--cap-add`. As a mask: 0x00000000a80425fb.
 */
export const DEFAULT_CAPABILITIES: readonly CapabilityName[] = [
  "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
  "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
];

/** Accepts `CAP_SYS_ADMIN`, `SYS_ADMIN` or `sys_admin`. */
export function normalizeCapability(name: string): CapabilityName {
  const bare = name.toUpperCase().replace(/^CAP_/, "");
  if (!(CAPABILITY_NAMES as readonly string[]).includes(bare)) {
    throw new Error(`unknown capability ${name}`);
  }
  return bare as CapabilityName;
}

export function capabilityNumber(name: string): number {
  return CAPABILITY_NAMES.indexOf(normalizeCapability(name));
}

/** The 64-bit mask of a set of capabilities, as the kernel prints it in /proc (16 hex digits). */
export function capabilityMask(names: Iterable<string>): bigint {
  let mask = 0n;
  for (const name of names) mask |= 1n << BigInt(capabilityNumber(name));
  return mask;
}

export function formatCapabilityMask(mask: bigint): string {
  return mask.toString(16).padStart(16, "0");
}

/** The capabilities named by a mask (unknown bits are dropped). */
export function capabilitiesOfMask(mask: bigint): CapabilityName[] {
  return CAPABILITY_NAMES.filter((_, i) => (mask >> BigInt(i)) & 1n);
}

let hostBounding: CapabilityName[] | undefined;

/**
 * The capabilities this process could hand out: its own bounding set (a
 * machine may already lack some, e.g. inside another container).
 */
export function hostCapabilities(): CapabilityName[] {
  if (hostBounding) return hostBounding;
  let mask = capabilityMask(CAPABILITY_NAMES);
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
    if (m?.[1]) mask = BigInt(`0x${m[1]}`);
  } catch {
    // not Linux or no procfs: keep every known capability
  }
  hostBounding = capabilitiesOfMask(mask);
  return hostBounding;
}
