import { randomBytes } from "node:crypto";
import { lstat, readdir, rename, rm } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { errnoCode } from "./errors.ts";
import { currentPidNamespace, isProcessAlive } from "./process-liveness.ts";

/** An entry of a process in another pid namespace cannot be checked by pid: it is removed only when this old. */
const FOREIGN_ENTRY_TTL_MS = 24 * 3_600_000;

/**
 * The root's tmp/ directory. Every entry is named "<pid>-<pid namespace>-<unique>-<label>":
 * staging a file or directory here (inside the root, so on the same file system) and
 * renaming it into place is what makes writes atomic. Entries of processes that no
 * longer run are leftovers of a crash and can be deleted.
 */
export class TempArea {
  private sequence = 0;
  private readonly namespace = namespaceNumber(currentPidNamespace());

  constructor(readonly dir: string) {}

  /** Whether `path` is below tmp/ (where a file can be moved into the store instead of copied). */
  holds(path: string): boolean {
    return resolve(path).startsWith(`${this.dir}${sep}`);
  }

  /** A fresh path under tmp/ (not created). */
  path(label: string): string {
    const safeLabel = label.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 80);
    const unique = `${(this.sequence++).toString(36)}${randomBytes(4).toString("hex")}`;
    return join(this.dir, `${process.pid}-${this.namespace}-${unique}-${safeLabel}`);
  }

  /** Deletes entries whose writer is gone; returns how many. Safe to run from several processes at once. */
  async removeStale(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return 0;
      throw error;
    }
    let removed = 0;
    for (const name of names) {
      if ((await this.isStale(name)) && (await this.remove(join(this.dir, name)))) removed++;
    }
    return removed;
  }

  /**
   * Removes a file or tree. The entry is first renamed to a name of ours, so that two
   * processes cleaning up at once never delete inside the same tree, and a crash in
   * the middle leaves an entry that the next cleanup finishes.
   */
  async remove(path: string): Promise<boolean> {
    const claimed = this.path("removing");
    try {
      await rename(path, claimed);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return false;
      throw error;
    }
    await rm(claimed, { recursive: true, force: true });
    return true;
  }

  private async isStale(name: string): Promise<boolean> {
    const match = /^(\d+)-(\d+)-/.exec(name);
    if (match === null) return false; // not ours: leave it alone
    const [pid, namespace] = [Number(match[1]), match[2]];
    if (namespace === this.namespace || namespace === "0" || this.namespace === "0") return !isProcessAlive(pid);
    const stats = await lstat(join(this.dir, name)).catch(() => undefined);
    return stats !== undefined && Date.now() - stats.mtimeMs > FOREIGN_ENTRY_TTL_MS;
  }
}

/** "pid:[4026531836]" → "4026531836"; "0" when unknown. */
function namespaceNumber(namespace: string | undefined): string {
  return /\[(\d+)\]/.exec(namespace ?? "")?.[1] ?? "0";
}
