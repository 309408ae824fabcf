/**
 * One JSON file per attachment under <state root>/net/attachments/: written
 * before anything is created and updated after each plugin, so that whatever
 * a killed process leaves behind can be deleted with the right CNI calls.
 */
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { CniResult, NetworkConfigList } from "./cni.ts";
import { errnoCode } from "./errors.ts";
import type { Owner } from "./owner.ts";

export interface AttachedNetwork {
  ifname: string;
  config: NetworkConfigList;
  /** The last result of ADD (the whole list's once it finished); DEL's prevResult. */
  result?: CniResult;
}

export interface AttachmentRecord {
  version: 1;
  id: string;
  owner: Owner;
  stateDir: string;
  netnsPath: string;
  bridge: string;
  subnet: string;
  cniPath: string[];
  /** In ADD order; released in reverse. */
  networks: AttachedNetwork[];
  createdAt: string;
}

export function netDir(stateDir: string): string {
  return join(stateDir, "net");
}

export function ipamDir(stateDir: string): string {
  return join(netDir(stateDir), "ipam");
}

function attachmentsDir(stateDir: string): string {
  return join(netDir(stateDir), "attachments");
}

export function recordFile(stateDir: string, id: string): string {
  return join(attachmentsDir(stateDir), `${id}.json`);
}

// Records are small files written or read a few times per RUN step: a synchronous call costs the
// event loop less than the round trips through libuv's thread pool of the asynchronous ones.

export async function writeRecord(record: AttachmentRecord): Promise<void> {
  const dir = attachmentsDir(record.stateDir);
  const temp = join(dir, `.${record.id}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  const text = `${JSON.stringify(record, null, 1)}\n`;
  try {
    writeFileSync(temp, text, { mode: 0o600 });
  } catch (error) {
    // the directory is made by the first record (not before every write: records are written twice per RUN step)
    if (errnoCode(error) !== "ENOENT") throw error;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    writeFileSync(temp, text, { mode: 0o600 });
  }
  renameSync(temp, recordFile(record.stateDir, record.id));
}

export async function readRecord(stateDir: string, id: string): Promise<AttachmentRecord | undefined> {
  try {
    const record = JSON.parse(readFileSync(recordFile(stateDir, id), "utf8")) as AttachmentRecord;
    return record.version === 1 && record.id === id ? record : undefined;
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

export async function listRecords(stateDir: string): Promise<AttachmentRecord[]> {
  let names: string[];
  try {
    names = await readdir(attachmentsDir(stateDir));
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return [];
    throw error;
  }
  const records: AttachmentRecord[] = [];
  for (const name of names) {
    if (name.startsWith(".")) {
      // a temp file of a writer killed between write and rename
      if (name.endsWith(".tmp")) await removeStaleTemp(join(attachmentsDir(stateDir), name));
      continue;
    }
    if (!name.endsWith(".json")) continue;
    const record = await readRecord(stateDir, name.slice(0, -".json".length));
    if (record) records.push(record);
  }
  return records;
}

async function removeStaleTemp(path: string): Promise<void> {
  const pid = Number(/\.(\d+)\.[a-z0-9]*\.tmp$/.exec(path)?.[1]);
  let alive: boolean;
  try {
    if (pid > 0) process.kill(pid, 0);
    alive = pid > 0;
  } catch (error) {
    alive = errnoCode(error) === "EPERM";
  }
  if (!alive) await rm(path, { force: true });
}

export async function removeRecord(stateDir: string, id: string): Promise<void> {
  try {
    unlinkSync(recordFile(stateDir, id));
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error;
  }
}
