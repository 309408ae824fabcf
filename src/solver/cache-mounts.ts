import { createHash, randomUUID } from "node:crypto";
import { chmod, chown, mkdir, open, readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ExecMount } from "../llb/index.ts";
import { isProcessAlive } from "./store/process-liveness.ts";

/**
 * `RUN --mount=type=cache` directories, kept under the state root by id
 * between builds. Sharing modes as in BuildKit: `shared` lets concurrent steps
 * use one directory, `locked` makes them take turns (across processes too),
 * `private` gives a concurrent step a directory of its own for that run.
 */
export class CacheMounts {
  private readonly resetThisBuild = new Set<string>();

  /**
   * @param fresh start each cache mount empty once in this build (`--no-cache`, as BuildKit does)
   */
  constructor(
    private readonly root: string,
    private readonly fresh: boolean,
  ) {}

  get dir(): string {
    return join(this.root, "cachemounts");
  }

  async acquire(mount: ExecMount): Promise<{ dir: string; release: () => Promise<void> }> {
    const key = createHash("sha256").update(mount.id ?? mount.target).digest("hex").slice(0, 32);
    const dir = join(this.dir, key);
    await mkdir(dir, { recursive: true });
    const sharing = mount.sharing ?? "shared";
    let release = async () => {};
    if (sharing !== "shared") {
      const lock = await this.lock(`${dir}.lock`, sharing === "locked");
      if (lock) release = lock;
      else return this.privateCopy(key, mount);
    }
    if (this.fresh && !this.resetThisBuild.has(key)) {
      this.resetThisBuild.add(key);
      for (const entry of await readdir(dir)) await rm(join(dir, entry), { recursive: true, force: true });
    }
    await this.setOwner(dir, mount);
    return { dir, release };
  }

  /** Removes every cache mount nobody holds (`tsbuild prune --cache-mounts`). Returns how many. */
  async prune(): Promise<number> {
    let removed = 0;
    for (const entry of await readdir(this.dir).catch(() => [] as string[])) {
      if (entry.endsWith(".lock")) continue;
      const lock = await this.lock(join(this.dir, `${entry}.lock`), false);
      if (!lock) continue;
      await rm(join(this.dir, entry), { recursive: true, force: true });
      await lock();
      removed++;
    }
    return removed;
  }

  /** A directory used by one step only, removed after it. */
  private async privateCopy(key: string, mount: ExecMount): Promise<{ dir: string; release: () => Promise<void> }> {
    const dir = join(this.dir, `${key}-private-${randomUUID().slice(0, 8)}`);
    await mkdir(dir, { recursive: true });
    await this.setOwner(dir, mount);
    return { dir, release: () => rm(dir, { recursive: true, force: true }) };
  }

  private async setOwner(dir: string, mount: ExecMount): Promise<void> {
    if (mount.mode !== undefined) await chmod(dir, mount.mode);
    if (mount.uid !== undefined || mount.gid !== undefined) await chown(dir, mount.uid ?? 0, mount.gid ?? 0);
  }

  /**
   * A lock file holding the owner's pid; a lock whose process is gone is taken
   * over. With `wait`, polls until free; without, returns undefined when held.
   */
  private async lock(path: string, wait: boolean): Promise<(() => Promise<void>) | undefined> {
    for (;;) {
      try {
        const handle = await open(path, "wx");
        await handle.writeFile(String(process.pid));
        await handle.close();
        return () => rm(path, { force: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const owner = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (!isProcessAlive(owner)) {
        await rm(path, { force: true });
        continue;
      }
      if (!wait) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
