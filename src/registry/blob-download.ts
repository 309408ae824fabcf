/**
 * Downloads one blob into the content store: streamed to a temp file while hashing and
 * counting, resumed with a Range request after a dropped connection (when the server
 * answers 206), checked for size and digest, then moved in. Nothing unverified ever
 * reaches the store, and the temp file is removed whatever happens.
 */
import { createHash, type Hash } from "node:crypto";
import { open, rm, type FileHandle } from "node:fs/promises";
import type { Descriptor } from "../exporter/index.ts";
import type { RegistryClient } from "./client.ts";
import { RegistryError } from "./errors.ts";
import { RetryableError, withRetries } from "./retry.ts";
import { discard, header } from "./transport.ts";
import type { ContentStore } from "./types.ts";

const PROGRESS_INTERVAL_MS = 100;
const WRITE_BATCH = 1 << 20;

export function shortDigest(digest: string): string {
  return digest.slice(0, digest.indexOf(":") + 13);
}

export async function downloadBlob(client: RegistryClient, descriptor: Pick<Descriptor, "digest" | "size">, store: ContentStore): Promise<void> {
  const { digest, size } = descriptor;
  const { onEvent } = client.operation.options;
  if (await store.hasBlob(digest)) {
    onEvent?.({ kind: "blob", digest, size, done: size, action: "exists" });
    return;
  }
  const algorithm = digest.startsWith("sha512:") ? "sha512" : "sha256";
  const what = `blob ${shortDigest(digest)}`;
  const { prefix } = client.context;
  const temp = store.tempPath(`pull-${digest.slice(digest.indexOf(":") + 1, digest.indexOf(":") + 17)}`);
  let handle: FileHandle | undefined;
  let hash: Hash = createHash(algorithm);
  let written = 0;
  let mismatches = 0;
  let lastReport = 0;
  const report = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastReport < PROGRESS_INTERVAL_MS) return;
    lastReport = now;
    onEvent?.({ kind: "blob", digest, size, done: written, action: "pull" });
  };
  const restart = async () => {
    await handle?.truncate(0);
    hash = createHash(algorithm);
    written = 0;
  };
  try {
    handle = await open(temp, "w", 0o600);
    report(true);
    await withRetries(what, prefix, client.operation.retry, async () => {
      const resumeFrom = written;
      const response = await client.send({
        method: "GET",
        path: `/${client.repository}/blobs/${digest}`,
        headers: resumeFrom > 0 ? { range: `bytes=${resumeFrom}-` } : {},
        followRedirects: true,
      });
      const status = response.statusCode;
      const resumed = status === 206 && resumeFrom > 0 && contentRangeStart(header(response, "content-range")) === resumeFrom;
      if (!resumed) {
        if (status === 206 || (status === 416 && resumeFrom > 0)) {
          // A range other than the one asked for, or one past the end (the connection
          // dropped after the last byte): start over without a range.
          await discard(response);
          await restart();
          throw new RetryableError(`the registry answered ${status} to a request to resume at byte ${resumeFrom}`);
        }
        if (status !== 200) {
          throw await client.failure(response, what, () =>
            new RegistryError("NOT_FOUND", `${prefix}: ${what} is not on ${client.endpoint.host}`, {
              hint: "the image references a blob the registry does not have: push the image again",
            }),
          );
        }
        // A 200 to a range request: the server does not resume, the bytes so far go.
        if (resumeFrom > 0) await restart();
      }
      // Chunks are written in batches: one write per ~1 MiB, not per 16-64 KiB network chunk.
      const pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (pendingBytes === 0) return;
        await writeAll(handle!, pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes), written - pendingBytes);
        pending.length = 0;
        pendingBytes = 0;
      };
      try {
        for await (const chunk of response.body as AsyncIterable<Buffer>) {
          if (written + chunk.length > size) {
            response.body.destroy();
            // Start over with nothing pending: the bytes so far are worthless.
            pending.length = 0;
            pendingBytes = 0;
            return mismatch(`the registry sent more than the ${size} bytes the descriptor gives`);
          }
          hash.update(chunk);
          pending.push(chunk);
          pendingBytes += chunk.length;
          written += chunk.length;
          if (pendingBytes >= WRITE_BATCH) await flush();
          report(false);
        }
      } finally {
        // What was received before a dropped connection is on disk, so a retry resumes after it.
        await flush();
      }
      if (written !== size) return mismatch(`the registry sent ${written} of ${size} bytes and ended the response`);
      const actual = `${algorithm}:${hash.digest("hex")}`;
      if (actual !== digest) return mismatch(`the content's digest is ${actual}`);
      report(true);
    });
    await handle.close();
    handle = undefined;
    // The download was hashed as it streamed and checked against the digest: no second read.
    await store.writeBlobFromFile(temp, digest, { verified: true });
  } catch (error) {
    throw localError(error, temp);
  } finally {
    await handle?.close().catch(() => undefined);
    await rm(temp, { force: true }).catch(() => undefined);
  }

  /** Wrong or short content: start over once, then give up (never resume after a mismatch). */
  async function mismatch(problem: string): Promise<never> {
    mismatches++;
    await restart();
    const reason = `${what} is corrupt: ${problem}`;
    if (mismatches < 2) throw new RetryableError(reason);
    throw new RegistryError("DIGEST_MISMATCH", `${prefix}: ${reason} (downloaded twice, wrong both times); nothing was stored`, {
      hint: "the registry or a proxy in between is returning corrupt data: try again later or tell its operator",
    });
  }
}

/** "bytes 100-199/200" → 100. */
function contentRangeStart(value: string | undefined): number | undefined {
  const match = /^bytes\s+(\d+)-\d+\/(\d+|\*)$/i.exec(value?.trim() ?? "");
  return match ? Number(match[1]) : undefined;
}

async function writeAll(handle: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset, position + offset);
    offset += bytesWritten;
  }
}

const LOCAL_REASONS: Record<string, string> = {
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is exhausted",
  EACCES: "permission denied",
  EROFS: "the file system is read-only",
};

/** A failure to write the temp file is the local disk's fault: say so (and never retry it). */
function localError(error: unknown, temp: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined && LOCAL_REASONS[code] !== undefined && (error as NodeJS.ErrnoException).syscall !== undefined) {
    return new RegistryError("LOCAL_STORE", `cannot write the downloaded blob to ${temp}: ${LOCAL_REASONS[code]}`, {
      hint: "free disk space (e.g. `tsbuild prune`) or use another state root",
      cause: error,
    });
  }
  return error;
}
