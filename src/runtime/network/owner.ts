/**
 * Who owns an attachment or a lock: a pid, that process's start time (a pid
 * can be reused), its pid namespace (a pid of another one cannot be checked:
 * such an owner counts as alive until the next reboot) and the boot id (after
 * a reboot nothing of before runs).
 */
import { closeSync, openSync, readFileSync, readlinkSync, unlinkSync, writeSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { NetworkError, errnoCode } from "./errors.ts";

export interface Owner {
  /** 0: nobody (an attachment whose release failed: any clean-up may retry it). */
  pid: number;
  startTime?: string;
  bootId?: string;
  pidNamespace?: string;
}

function startTimeOf(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "latin1");
    // field 22; the command name (field 2) may contain spaces and parentheses
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return "zombie";
    return fields[19];
  } catch {
    return undefined;
  }
}

let bootId: string | undefined | null = null;

function currentBootId(): string | undefined {
  if (bootId === null) {
    try {
      bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    } catch {
      bootId = undefined;
    }
  }
  return bootId;
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return undefined;
  }
}

let self: Owner | undefined;

export function currentOwner(): Owner {
  if (!self) {
    self = { pid: process.pid };
    const startTime = startTimeOf(process.pid);
    if (startTime) self.startTime = startTime;
    const boot = currentBootId();
    if (boot) self.bootId = boot;
    const namespace = pidNamespace();
    if (namespace) self.pidNamespace = namespace;
  }
  return self;
}

export function isOwnerAlive(owner: Owner | undefined): boolean {
  if (!owner || !Number.isInteger(owner.pid) || owner.pid <= 0) return false;
  const boot = currentBootId();
  if (owner.bootId && boot && owner.bootId !== boot) return false;
  const namespace = currentOwner().pidNamespace;
  if (owner.pidNamespace && namespace && owner.pidNamespace !== namespace) return true;
  if (owner.pid === process.pid) return owner.startTime === undefined || owner.startTime === currentOwner().startTime;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if (errnoCode(error) !== "EPERM") return false;
  }
  const startTime = startTimeOf(owner.pid);
  if (startTime === "zombie") return false;
  return owner.startTime === undefined || startTime === undefined || startTime === owner.startTime;
}

const queues = new Map<string, Promise<unknown>>();

/**
 * Runs `fn` holding the lock file `path` (created with O_EXCL, holding the
 * owner; a lock whose owner died is broken). Calls from this process queue up
 * first, so the file is only contended between processes.
 */
export function withLock<T>(path: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const previous = queues.get(path) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(() => lockAndRun(path, fn, timeoutMs));
  const tail = run.catch(() => undefined);
  queues.set(path, tail);
  void tail.then(() => {
    if (queues.get(path) === tail) queues.delete(path);
  });
  return run;
}

async function lockAndRun<T>(path: string, fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    // a small file taken and given back for every attachment: synchronous calls cost the event loop less
    try {
      const fd = openSync(path, "wx", 0o600);
      try {
        writeSync(fd, JSON.stringify(currentOwner()));
      } finally {
        closeSync(fd);
      }
      break;
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") throw error;
    }
    let holder: Owner | undefined;
    try {
      holder = JSON.parse(readFileSync(path, "utf8")) as Owner;
    } catch {
      // being written or just removed: look again
    }
    if (holder && !isOwnerAlive(holder)) {
      // a crashed holder: move its lock aside (one breaker wins the rename) and retry
      const aside = `${path}.stale-${process.pid}-${Date.now()}`;
      try {
        await rename(path, aside);
        await rm(aside, { force: true });
      } catch {
        // someone else broke it
      }
      continue;
    }
    if (Date.now() > deadline) {
      throw new NetworkError("LOCK_TIMEOUT", `the network lock ${path} has been held by process ${holder?.pid ?? "?"} for over ${Math.round(timeoutMs / 1000)} s`, {
        hint: `if no tsbuild is running, delete ${path}`,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 50);
  }
  try {
    return await fn();
  } finally {
    unlock(path);
  }
}

function unlock(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error;
  }
}
