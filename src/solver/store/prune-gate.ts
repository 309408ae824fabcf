import { randomBytes } from "node:crypto";
import { access, readFile, readdir, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { StoreError, errnoCode } from "./errors.ts";
import { currentProcessIdentity, ownerStatus, type ProcessIdentity } from "./process-liveness.ts";

/*
 * How a use and a prune never miss each other (no lock primitive needed):
 *
 *   user:   touch the item (mtime = now)   then look for prune markers
 *   prune:  create its marker              then read the items' mtimes and decide
 *
 * Each side writes before it reads what the other wrote. Either the user's check comes
 * after the marker exists (the user waits for the prune to finish, then re-checks that
 * the item is still there), or the touch came before the marker, hence before the prune
 * read the mtime, and the prune sees a recent use and keeps the item.
 * The marker only lives while the prune decides and moves its victims into tmp/ (fast);
 * deleting their contents happens afterwards, without blocking anyone.
 */

/** A marker whose owner cannot be checked (another pid namespace) is trusted this long. */
const FOREIGN_MARKER_TTL_MS = 10 * 60_000;
const POLL_MS = 20;
/** Deciding takes seconds; a prune still deciding after this is stuck (stopped?) and reported. */
const WAIT_LIMIT_MS = 10 * 60_000;

export class PruneGate {
  constructor(readonly dir: string) {}

  /** Marks a prune as deciding; the returned function ends that. */
  async enter(): Promise<() => Promise<void>> {
    const identity = currentProcessIdentity();
    const path = join(this.dir, `${identity.pid}-${randomBytes(6).toString("hex")}.json`);
    await writeFile(path, JSON.stringify(identity));
    return () => unlink(path).catch(() => undefined);
  }

  /** Waits while a prune (of any process, this one included) is deciding; returns whether one was seen. */
  async waitUntilClear(): Promise<boolean> {
    const started = Date.now();
    let seen = false;
    for (;;) {
      const owner = await this.liveMarker();
      if (owner === undefined) return seen;
      seen = true;
      if (Date.now() - started > WAIT_LIMIT_MS) {
        throw new StoreError({
          code: "EPRUNEBUSY",
          message: `a prune (pid ${owner.pid}) has held ${this.dir} for over ${WAIT_LIMIT_MS / 60_000} minutes`,
          path: this.dir,
          hint: "if that process is stopped or hung, kill it; its marker is then ignored",
        });
      }
      await sleep(POLL_MS);
    }
  }

  private async liveMarker(): Promise<ProcessIdentity | undefined> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return undefined;
      throw error;
    }
    for (const name of names) {
      const path = join(this.dir, name);
      const owner = await readMarker(path);
      if (owner === undefined) continue;
      const status = ownerStatus(owner);
      if (status === "alive") return owner;
      if (status === "unknown" && (await isRecent(path))) return owner;
      // The prune died while deciding: what it had moved to tmp/ is cleaned with the rest of tmp/.
      await unlink(path).catch(() => undefined);
    }
    return undefined;
  }
}

async function readMarker(path: string): Promise<ProcessIdentity | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<ProcessIdentity>;
    if (typeof parsed.pid !== "number") return undefined;
    return { pid: parsed.pid, startTime: parsed.startTime, pidNamespace: parsed.pidNamespace };
  } catch {
    // Missing (just removed) or still being written: a marker being written belongs to a prune
    // that has not read anything yet, so it cannot have judged our touch stale.
    return undefined;
  }
}

async function isRecent(path: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(path)).mtimeMs < FOREIGN_MARKER_TTL_MS;
  } catch {
    return false;
  }
}

/**
 * Records a use of a stored item (a cache record, a layer's meta.json, a blob) by
 * setting its mtime to now, the "last used" time prune goes by, and makes sure no
 * prune is about to delete it. Returns false if the item does not exist (any more).
 */
export async function recordUse(path: string, gate: PruneGate): Promise<boolean> {
  const now = new Date();
  try {
    await utimes(path, now, now);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return false;
    // Not allowed to touch it (a read-only root, another owner): still usable, just not protected.
    if (!(await exists(path))) return false;
  }
  if (await gate.waitUntilClear()) return exists(path);
  return true;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
