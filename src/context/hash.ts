/**
 * Content hashing of one regular file: sha256 over its bytes, each byte read
 * and hashed once. Small files are read synchronously (an order of magnitude
 * cheaper than the thread pool for many small files); large ones are read in
 * 1 MiB chunks asynchronously, so the process stays responsive.
 */
import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { open } from "node:fs/promises";
import type { BigIntStats } from "node:fs";

/** Files up to this size are read with synchronous calls. */
const SYNC_READ_LIMIT = 256 * 1024;
const CHUNK = 1024 * 1024;
/** O_NOFOLLOW: a file replaced by a symlink is not followed; O_NONBLOCK: a file replaced by a FIFO does not hang. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

let smallBuffer: Buffer | undefined;

export interface FileHash {
  /** Hex sha256 of the content. */
  readonly digest: string;
  readonly bytes: number;
  /** fstat of the open file after reading: tells whether it changed meanwhile. */
  readonly stats: BigIntStats;
}

export class NotRegularFileError extends Error {}

/** Hashes the file at `hostPath`; `expectedSize` picks the sync or async path. */
export async function hashFile(hostPath: string, expectedSize: number): Promise<FileHash> {
  return expectedSize <= SYNC_READ_LIMIT ? hashSmallFile(hostPath) : hashLargeFile(hostPath);
}

function hashSmallFile(hostPath: string): FileHash {
  const fd = openSync(hostPath, OPEN_FLAGS);
  try {
    const hash = createHash("sha256");
    smallBuffer ??= Buffer.allocUnsafe(SYNC_READ_LIMIT);
    let bytes = 0;
    for (;;) {
      const n = readSync(fd, smallBuffer, 0, smallBuffer.length, null);
      if (n === 0) break;
      hash.update(smallBuffer.subarray(0, n));
      bytes += n;
    }
    const stats = fstatSync(fd, { bigint: true });
    if (!stats.isFile()) throw new NotRegularFileError(hostPath);
    return { digest: hash.digest("hex"), bytes, stats };
  } finally {
    closeSync(fd);
  }
}

async function hashLargeFile(hostPath: string): Promise<FileHash> {
  const handle = await open(hostPath, OPEN_FLAGS);
  try {
    const hash = createHash("sha256");
    const buffer = Buffer.allocUnsafe(CHUNK);
    let bytes = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      bytes += bytesRead;
    }
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw new NotRegularFileError(hostPath);
    return { digest: hash.digest("hex"), bytes, stats };
  } finally {
    await handle.close();
  }
}
