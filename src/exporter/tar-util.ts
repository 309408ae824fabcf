import { Writable } from "node:stream";
import type { Extract, Pack } from "tar-stream";

/** The header argument of tar-stream's `pack.entry`. */
export type TarHeader = Parameters<Pack["entry"]>[0];

/** Largest values the ustar header fields tar-stream writes can hold; larger ones go to PAX records. */
const MAX_ID = 0o777777;
const MAX_MTIME = 2 ** 31 - 1;

interface Drainable {
  once(event: "drain" | "close" | "error", listener: (...args: unknown[]) => void): unknown;
  off(event: "drain" | "close" | "error", listener: (...args: unknown[]) => void): unknown;
}

/** Resolves on the next 'drain' of a streamx writable; rejects if it closes or fails first. */
export function drained(stream: Drainable): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
      stream.off("error", onError);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(new Error("tar stream closed before its entry was written"));
    };
    const onError = (error: unknown) => {
      cleanup();
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    stream.once("drain", onDrain);
    stream.once("close", onClose);
    stream.once("error", onError);
  });
}

/**
 * Writes a byte stream into a tar-stream extractor with backpressure, then ends it. Stops
 * (throws) if the extractor is destroyed meanwhile, as when a reader gives up on an entry.
 */
export async function feedTar(extract: Extract, source: AsyncIterable<Buffer>): Promise<void> {
  for await (const chunk of source) {
    if (extract.destroying || extract.destroyed) throw new Error("tar extraction stopped");
    if (!extract.write(chunk)) await drained(extract);
  }
  extract.end(undefined);
}

/**
 * Adds one entry to a tar pack and resolves once it is queued. A body that is an async
 * iterable (a file stream) is copied with backpressure; its byte count must equal `header.size`.
 */
export function addTarEntry(pack: Pack, header: TarHeader, body?: Buffer | AsyncIterable<Buffer>): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error | null) => (error ? reject(error) : resolve());
    if (body === undefined) {
      if (header.type === "file") pack.entry(header, Buffer.alloc(0), done);
      else pack.entry(header, done);
      return;
    }
    if (Buffer.isBuffer(body)) {
      pack.entry(header, body, done);
      return;
    }
    const sink = pack.entry(header, done);
    (async () => {
      for await (const chunk of body) {
        if (!sink.write(chunk)) await drained(sink);
      }
      sink.end(undefined);
    })().catch((error: unknown) => {
      sink.destroy(error instanceof Error ? error : new Error(String(error)));
    });
  });
}

/**
 * Fills uid, gid and mtime of a header, moving values the ustar fields cannot hold (large
 * ids, times before 1970 or after 2038) to PAX records as GNU tar and Go's archive/tar do.
 */
export function setOwnerAndTime(header: TarHeader, uid: number, gid: number, mtimeSeconds: number): TarHeader {
  const pax: Record<string, string> = {};
  header.uid = uid;
  header.gid = gid;
  if (uid > MAX_ID) {
    pax.uid = String(uid);
    header.uid = 65534;
  }
  if (gid > MAX_ID) {
    pax.gid = String(gid);
    header.gid = 65534;
  }
  let seconds = mtimeSeconds;
  if (seconds < 0 || seconds > MAX_MTIME) {
    pax.mtime = String(seconds);
    seconds = Math.min(Math.max(seconds, 0), MAX_MTIME);
  }
  header.mtime = new Date(seconds * 1000);
  if (Object.keys(pax).length > 0) header.pax = pax;
  return header;
}

/** uid, gid and mtime (seconds) of an extracted header, PAX records first. */
export function ownerAndTime(header: { uid: number; gid: number; mtime: Date; pax?: unknown }): {
  uid: number;
  gid: number;
  mtimeSeconds: number;
} {
  const pax = (header.pax ?? {}) as Record<string, string | undefined>;
  const number = (value: string | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    const parsed = Number(value);
    return Number.isFinite(parsed) ? parsed : fallback;
  };
  return {
    uid: number(pax.uid, header.uid),
    gid: number(pax.gid, header.gid),
    mtimeSeconds: number(pax.mtime, Math.floor(header.mtime.getTime() / 1000)),
  };
}

/**
 * Waits for all the promises (a producer and the pipeline consuming it) and rethrows the
 * first failure in time: the cause (an unreadable file, a full disk), not the other side's
 * "stream destroyed" that follows it.
 */
export async function allOrFirstError(promises: readonly Promise<unknown>[]): Promise<void> {
  let first: { error: unknown } | undefined;
  await Promise.allSettled(
    promises.map((promise) =>
      promise.catch((error: unknown) => {
        first ??= { error };
        throw error;
      }),
    ),
  );
  if (first) throw first.error;
}

/** A sink that drops what it is given: the end of a pipeline that is run for its hashes. */
export function discard(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}
