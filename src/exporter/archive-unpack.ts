import { createHash } from "node:crypto";
import { constants as fsConstants, createReadStream } from "node:fs";
import { lstat, mkdir, open, rm } from "node:fs/promises";
import { join, posix } from "node:path";
import { pipeline, Readable } from "node:stream";
import { extract as createExtract } from "tar-stream";
import { createDecompressor, detectCompression } from "./compression.ts";
import { ExporterError } from "./errors.ts";
import { parentOf, splitLayerPath } from "./paths.ts";
import { feedTar } from "./tar-util.ts";

/** The regular files of an unpacked archive, and how its links (kept as names, never made on disk) resolve. */
export interface UnpackedArchive {
  dir: string;
  /** The file on disk an archive path names (following the archive's own symlinks and hard links), or undefined. */
  resolve(name: string): Promise<string | undefined>;
  /** sha256 of a file as unpacked (by its path on disk), hashed while it was written. */
  digestOf(path: string): string | undefined;
}

const MAX_LINK_HOPS = 16;

/**
 * Unpacks a tar (plain, gzip or zstd, told apart by its first bytes) read sequentially from
 * `file` (a pipe such as /dev/stdin works) into `dir`: regular files and directories only.
 * Symlinks and hard links are recorded and resolved by `resolve` inside the archive, so nothing
 * is ever written outside `dir`; an absolute or '..' entry name fails the whole archive.
 */
export async function unpackArchive(file: string, dir: string, shown: string, code: "ERR_IMAGE_ARCHIVE" | "ERR_OCI_LAYOUT"): Promise<UnpackedArchive> {
  const aliases = new Map<string, string>();
  const digests = new Map<string, string>();
  await mkdir(dir, { recursive: true });
  const extract = createExtract();
  // Iterate from the start: an extractor that fails before anyone listens would never say so.
  const iterator = extract[Symbol.asyncIterator]();
  // The extractor's own error ("Unexpected end of data") says more than the entry stream's "destroyed".
  let extractError: unknown;
  extract.on("error", (error: unknown) => (extractError ??= error));
  const input = createReadStream(file, { highWaterMark: 64 * 1024 });
  const feeding = feedTar(extract, decompressed(input)).catch((error: unknown) => {
    extract.destroy(error as Error);
    throw error;
  });
  let failure: unknown;
  try {
    for await (const entry of { [Symbol.asyncIterator]: () => iterator }) {
      const { name, type, linkname } = entry.header;
      const body = entry as AsyncIterable<Buffer>;
      const path = archivePath(name);
      if (path === undefined) {
        throw new ExporterError(code, `${shown}: refusing archive entry ${JSON.stringify(name)}: it leaves the archive (absolute or '..'); the archive is malformed or malicious`);
      }
      if (type === "file" || type === "contiguous-file") {
        if (path === "") throw new ExporterError(code, `${shown}: archive entry ${JSON.stringify(name)} is a file without a name`);
        aliases.delete(path);
        const abs = join(dir, path);
        digests.set(abs, await writeFile(abs, body));
        continue;
      }
      for await (const _chunk of body) {
        // no content to keep
      }
      if (type === "directory") await mkdir(join(dir, path), { recursive: true });
      else if (type === "symlink" && linkname) aliases.set(path, posix.join(parentOf(path), linkname));
      else if (type === "link" && linkname) aliases.set(path, linkname);
    }
  } catch (error) {
    failure = error;
    extract.destroy();
    input.destroy();
  }
  const fed = await feeding.then(
    () => undefined,
    (error: unknown) => error,
  );
  const error = failure instanceof ExporterError ? failure : (extractError ?? failure ?? fed);
  if (error instanceof ExporterError) throw error;
  if (error !== undefined) {
    throw new ExporterError(code, `${shown} is not a readable archive: ${(error as Error).message}`, {
      cause: error,
      hint: "check that the file is a complete docker-save or OCI tar (it may be truncated)",
    });
  }

  const resolve = async (name: string): Promise<string | undefined> => {
    let path = archivePath(name);
    if (path === undefined) throw new ExporterError(code, `${shown}: ${JSON.stringify(name)} leaves the archive (absolute or '..'); the archive is malformed or malicious`);
    for (let hops = 0; ; hops++) {
      const aliased = aliasOf(aliases, path);
      if (aliased === undefined) break;
      if (hops >= MAX_LINK_HOPS) throw new ExporterError(code, `${shown}: ${JSON.stringify(name)} is a loop of links`);
      path = archivePath(aliased);
      if (path === undefined) throw new ExporterError(code, `${shown}: ${JSON.stringify(name)} is a link that leaves the archive; the archive is malformed or malicious`);
    }
    const abs = join(dir, path);
    const info = await lstat(abs).catch(() => undefined);
    return info?.isFile() ? abs : undefined;
  };
  return { dir, resolve, digestOf: (path) => digests.get(path) };
}

/** A relative archive name ("./a/b", "a//b/") as "a/b"; undefined when it is absolute or has '..'. */
function archivePath(name: string): string | undefined {
  const split = splitLayerPath(name);
  return "unsafe" in split ? undefined : split.parts.join("/");
}

/** `path` with its longest prefix that is a link replaced by the link's target; undefined if no prefix is a link. */
function aliasOf(aliases: Map<string, string>, path: string): string | undefined {
  for (let end = path.length; end > 0; end = path.lastIndexOf("/", end - 1)) {
    const target = aliases.get(path.slice(0, end));
    if (target !== undefined) return target + path.slice(end);
  }
  return undefined;
}

/** Writes an entry's content; returns its sha256 (so a plain layer need not be read again to be verified). */
async function writeFile(abs: string, body: AsyncIterable<Buffer>): Promise<string> {
  await mkdir(parentOf(abs), { recursive: true });
  const existing = await lstat(abs).catch(() => undefined);
  if (existing?.isDirectory()) await rm(abs, { recursive: true });
  const handle = await open(abs, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_NOFOLLOW, 0o644);
  const hash = createHash("sha256");
  try {
    for await (const chunk of body) {
      hash.update(chunk);
      let offset = 0;
      while (offset < chunk.length) offset += (await handle.write(chunk, offset)).bytesWritten;
    }
  } finally {
    await handle.close();
  }
  return `sha256:${hash.digest("hex")}`;
}

/** The stream, decompressed if its first bytes say gzip or zstd. */
async function* decompressed(input: Readable): AsyncGenerator<Buffer> {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let length = 0;
  while (length < 4) {
    const next = await iterator.next();
    if (next.done) break;
    head.push(next.value);
    length += next.value.length;
  }
  const first = Buffer.concat(head);
  const rest = async function* (): AsyncGenerator<Buffer> {
    if (first.length > 0) yield first;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  };
  const decompressor = await createDecompressor(detectCompression(first));
  if (!decompressor) {
    yield* rest();
    return;
  }
  // pipeline, not pipe: a read error must reach the decompressor (and so this loop).
  yield* pipeline(Readable.from(rest()), decompressor, () => undefined) as AsyncIterable<Buffer>;
}
