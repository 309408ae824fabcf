import { readFileSync, readlinkSync } from "node:fs";

/**
 * Who owns a temp entry, a lease or a prune marker is recorded as a pid. A pid can be
 * reused after its process dies, so where it matters the process start time (field 22
 * of /proc/<pid>/stat, in clock ticks since boot) is recorded too and compared.
 */
export interface ProcessIdentity {
  pid: number;
  /** Undefined when /proc is not available. */
  startTime: string | undefined;
  /** The pid namespace ("pid:[4026531836]"): pids from another namespace cannot be checked. */
  pidNamespace: string | undefined;
}

function readStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: fields start after the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

let ownNamespace: string | undefined | null = null;

export function currentPidNamespace(): string | undefined {
  if (ownNamespace === null) {
    try {
      ownNamespace = readlinkSync("/proc/self/ns/pid");
    } catch {
      ownNamespace = undefined;
    }
  }
  return ownNamespace;
}

let ownIdentity: ProcessIdentity | undefined;

export function currentProcessIdentity(): ProcessIdentity {
  ownIdentity ??= { pid: process.pid, startTime: readStat(process.pid)?.startTime, pidNamespace: currentPidNamespace() };
  return ownIdentity;
}

/** True if the process exists (a zombie counts as dead) and, when given, started at `startTime`. */
export function isProcessAlive(pid: number, startTime?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid && (startTime === undefined || startTime === currentProcessIdentity().startTime)) return true;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const stat = readStat(pid);
  if (stat === undefined) return true; // no /proc: trust kill(0)
  if (stat.state === "Z" || stat.state === "X") return false;
  return startTime === undefined || stat.startTime === startTime;
}

/**
 * Whether a recorded owner is still running. Owners from another pid namespace cannot
 * be checked: `unknown` lets the caller fall back to another signal (a heartbeat).
 */
export function ownerStatus(owner: ProcessIdentity): "alive" | "dead" | "unknown" {
  const ours = currentPidNamespace();
  if (owner.pidNamespace !== undefined && ours !== undefined && owner.pidNamespace !== ours) return "unknown";
  return isProcessAlive(owner.pid, owner.startTime) ? "alive" : "dead";
}
