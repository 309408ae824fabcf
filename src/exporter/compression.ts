import { availableParallelism } from "node:os";
import { open } from "node:fs/promises";
import type { Transform } from "node:stream";
import { createGunzip, createGzip } from "node:zlib";
import type * as ZstdNapi from "zstd-napi";
import { ExporterError } from "./errors.ts";
import type { LayerCompression } from "./media-types.ts";

export type { LayerCompression };

const CHUNK = 64 * 1024;
const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** Default and allowed levels: gzip's as Go and BuildKit use them, zstd's as the zstd CLI. */
const LEVELS = {
  gzip: { default: 6, min: 0, max: 9 },
  zstd: { default: 3, min: 1, max: 22 },
} as const;

/** The compression level to use: the default when none is given; out of range is an error that names the range. */
export function compressionLevel(compression: LayerCompression, level: number | undefined): number | undefined {
  if (compression === "uncompressed") return undefined;
  const range = LEVELS[compression];
  if (level === undefined) return range.default;
  if (!Number.isInteger(level) || level < range.min || level > range.max) {
    throw new ExporterError("ERR_BAD_OPTION", `${compression} compression level ${level} is out of range`, {
      hint: `use an integer from ${range.min} to ${range.max} (default ${range.default})`,
    });
  }
  return level;
}

type ZstdModule = typeof ZstdNapi;
let zstd: Promise<ZstdModule> | undefined;

/** zstd-napi is a native addon: loaded on first use, so commands that never meet zstd do not pay for it. */
function loadZstd(): Promise<ZstdModule> {
  zstd ??= import("zstd-napi").catch((error: unknown) => {
    zstd = undefined;
    throw new ExporterError("ERR_LAYER_UNSUPPORTED", `zstd is not available: ${(error as Error).message}`, {
      cause: error,
      hint: "reinstall tsbuild's dependencies (npm ci builds the zstd-napi addon), or use gzip",
    });
  });
  return zstd;
}

/**
 * zstd worker threads. With one or more, compression runs off the main thread (which packs
 * and hashes the tar meanwhile), and the output is the same whatever their number; it differs
 * from single-threaded zstd's, so the count must never drop to 0 or digests would change.
 */
const ZSTD_WORKERS = Math.max(1, Math.min(4, availableParallelism()));

/** A compressing stream (level already validated), or undefined for "uncompressed". */
export async function createCompressor(compression: LayerCompression, level: number | undefined): Promise<Transform | undefined> {
  switch (compression) {
    case "uncompressed":
      return undefined;
    case "gzip":
      return createGzip({ level: level ?? LEVELS.gzip.default, chunkSize: CHUNK });
    case "zstd": {
      const { CompressStream } = await loadZstd();
      return new CompressStream({ compressionLevel: level ?? LEVELS.zstd.default, nbWorkers: ZSTD_WORKERS });
    }
  }
}

/** A decompressing stream, or undefined for "uncompressed". */
export async function createDecompressor(compression: LayerCompression): Promise<Transform | undefined> {
  switch (compression) {
    case "uncompressed":
      return undefined;
    case "gzip":
      return createGunzip({ chunkSize: CHUNK });
    case "zstd": {
      const { DecompressStream } = await loadZstd();
      return new DecompressStream();
    }
  }
}

/** The compression of a buffer by its magic bytes (anything else is taken for a plain tar). */
export function detectCompression(head: Uint8Array): LayerCompression {
  const starts = (magic: number[]) => head.length >= magic.length && magic.every((byte, i) => head[i] === byte);
  if (starts(GZIP_MAGIC)) return "gzip";
  if (starts(ZSTD_MAGIC)) return "zstd";
  return "uncompressed";
}

/** The compression of a file by its magic bytes, whatever its name or media type says. */
export async function sniffCompression(path: string): Promise<LayerCompression> {
  const handle = await open(path, "r");
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(4), 0, 4, 0);
    return detectCompression(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}
