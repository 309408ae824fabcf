import { randomBytes } from "node:crypto";
import { unlinkSync } from "node:fs";
import { readFile, stat, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { describeFsError, errnoCode } from "./errors.ts";
import { listDir } from "./list-dir.ts";
import { currentProcessIdentity, ownerStatus, type ProcessIdentity } from "./process-liveness.ts";
import type { TempArea } from "./temp-area.ts";

/*
 * A lease says "a running process is using this root since <startedAt>". Prune keeps
 * everything created or used at or after the start of the oldest live lease (see
 * prune.ts), so a build that takes a lease before it touches the store never loses
 * what it uses. A lease ends when released, when its process exits, or, after a
 * SIGKILL, as soon as its pid is seen dead.
 */

export interface Lease {
  readonly id: string;
  /** Milliseconds since the epoch. */
  readonly startedAt: number;
  /** Ends the lease (idempotent). */
  release(): Promise<void>;
}

export interface LeaseRecord extends ProcessIdentity {
  id: string;
  startedAt: number;
}

/** Leases of another pid namespace cannot be checked by pid: their holder refreshes the file's mtime instead. */
const HEARTBEAT_MS = 60_000;
const FOREIGN_LEASE_TTL_MS = 10 * HEARTBEAT_MS;

export class LeaseRegistry {
  constructor(
    private readonly dir: string,
    private readonly temp: TempArea,
  ) {}

  async acquire(): Promise<Lease> {
    const id = `${process.pid}-${randomBytes(6).toString("hex")}`;
    const path = join(this.dir, `${id}.json`);
    const record: LeaseRecord = { id, startedAt: Date.now(), ...currentProcessIdentity() };
    await writeFileAtomic(path, JSON.stringify(record), { tempPath: this.temp.path("lease"), fsync: false });

    removeOnExit(path);
    const heartbeat = setInterval(() => {
      const now = new Date();
      utimes(path, now, now).catch(() => undefined);
    }, HEARTBEAT_MS);
    heartbeat.unref();

    let released = false;
    return {
      id,
      startedAt: record.startedAt,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(heartbeat);
        leaseFilesOfThisProcess.delete(path);
        await unlink(path).catch((error: unknown) => {
          if (errnoCode(error) !== "ENOENT") throw describeFsError(error, "remove the lease", path);
        });
      },
    };
  }

  /** The leases whose holder still runs; files of dead holders are removed on the way. */
  async live(): Promise<LeaseRecord[]> {
    const names = await listDir(this.dir);
    const live: LeaseRecord[] = [];
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      const path = join(this.dir, name);
      const lease = await readLease(path);
      if (lease === undefined) continue;
      if (await isLive(lease, path)) live.push(lease);
      else await unlink(path).catch(() => undefined);
    }
    return live;
  }
}

/** Lease files to remove when the process exits normally (one exit listener for all of them). */
const leaseFilesOfThisProcess = new Set<string>();

function removeOnExit(path: string): void {
  if (leaseFilesOfThisProcess.size === 0) {
    process.once("exit", () => {
      for (const file of leaseFilesOfThisProcess) {
        try {
          unlinkSync(file);
        } catch {
          // already gone
        }
      }
    });
  }
  leaseFilesOfThisProcess.add(path);
}

async function readLease(path: string): Promise<LeaseRecord | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<LeaseRecord>;
    if (typeof parsed.pid !== "number" || typeof parsed.startedAt !== "number" || typeof parsed.id !== "string") return undefined;
    return { id: parsed.id, pid: parsed.pid, startedAt: parsed.startedAt, startTime: parsed.startTime, pidNamespace: parsed.pidNamespace };
  } catch {
    return undefined; // released meanwhile (files appear complete, by rename)
  }
}

async function isLive(lease: LeaseRecord, path: string): Promise<boolean> {
  const status = ownerStatus(lease);
  if (status !== "unknown") return status === "alive";
  try {
    return Date.now() - (await stat(path)).mtimeMs < FOREIGN_LEASE_TTL_MS;
  } catch {
    return false;
  }
}
