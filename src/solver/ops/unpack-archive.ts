/**
 * ADD's archive unpacking (Docker's `archive.Untar`, BuildKit's AttemptUnpack): a source
 * file that is a tar archive, uncompressed or compressed with gzip, bzip2, xz or zstd
 * (recognized by its magic bytes, never by its name), is extracted into the destination
 * directory instead of being copied. Entries keep their owners, modes and times; `.wh.`
 * files are ordinary files here. No entry can write outside the destination.
 */
import { createReadStream, type Stats } from "node:fs";
import { chown, lchown, lstat, lutimes, mkdir, open } from "node:fs/promises";
import { basename } from "node:path";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { extract as createExtract, type Header } from "tar-stream";
import { UserError } from "../../user-error.ts";
import { runCommand, startCommand } from "../sources/command.ts";
import { drain, feedTar, parentOf, TarEntryWriter, type EntryMeta } from "../../exporter/index.ts";

export type ArchiveCompression = "uncompressed" | "gzip" | "bzip2" | "xz" | "zstd";

/** Decompressors that are external commands (Node's zlib has gzip only). */
const COMMANDS: Partial<Record<ArchiveCompression, string>> = { bzip2: "bzip2", xz: "xz", zstd: "zstd" };

const TAR_BLOCK = 512;
const CHUNK = 64 * 1024;

/** A tar entry refused because it would write outside the directory it is unpacked into. */
export class UnsafeArchiveEntryError extends UserError {
  override readonly name = "UnsafeArchiveEntryError";
  constructor(
    readonly archive: string,
    readonly entry: string,
    reason: string,
  ) {
    super(
      `refusing entry ${JSON.stringify(entry)} of archive ${archive}: ${reason}`,
      "the archive is malformed or malicious; nothing outside the destination was written. Rebuild the archive with relative paths inside one tree",
    );
  }
}

/** The archive cannot be read (corrupt data, unsupported entry). */
export class BadArchiveError extends UserError {
  override readonly name = "BadArchiveError";
}

/** The compression format named by the first bytes of a file (Docker's DetectCompression). */
export function detectCompression(head: Uint8Array): ArchiveCompression {
  const starts = (...magic: number[]) => head.length >= magic.length && magic.every((byte, index) => head[index] === byte);
  if (starts(0x42, 0x5a, 0x68)) return "bzip2";
  if (starts(0x1f, 0x8b, 0x08)) return "gzip";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  // A zstd skippable frame (magic 0x184D2A50-5F, little endian) may precede the data.
  if (head.length >= 4 && (head[0]! & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18) return "zstd";
  return "uncompressed";
}

/** Whether a block is a valid tar header: not all zeros, and its checksum (unsigned or signed, as Go accepts) matches. */
export function isTarHeader(block: Uint8Array): boolean {
  if (block.length < TAR_BLOCK) return false;
  const field = Buffer.from(block.subarray(148, 156)).toString("latin1").replace(/[\0 ]+$/, "").replace(/^[ ]+/, "");
  if (!/^[0-7]+$/.test(field)) return false;
  const expected = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  let zero = true;
  for (let index = 0; index < TAR_BLOCK; index++) {
    const byte = index >= 148 && index < 156 ? 0x20 : block[index]!;
    if (block[index] !== 0) zero = false;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return !zero && (expected === unsigned || expected === signed);
}

/**
 * The archive's compression if `hostPath` is a regular file holding a tar archive
 * (a valid first header once decompressed), else undefined. Throws MissingCommandError
 * when the file is bzip2/xz/zstd data and the command to read it is not installed.
 */
export async function detectArchive(hostPath: string): Promise<ArchiveCompression | undefined> {
  const stats = await lstat(hostPath);
  if (!stats.isFile()) return undefined;
  const handle = await open(hostPath, "r");
  let head: Buffer;
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(TAR_BLOCK), 0, TAR_BLOCK, 0);
    head = buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const compression = detectCompression(head);
  if (compression === "uncompressed") return isTarHeader(head) ? compression : undefined;
  const first = await readDecompressedHead(hostPath, compression);
  return first !== undefined && isTarHeader(first) ? compression : undefined;
}

/** The first tar block of a compressed file, or undefined if the data cannot be decompressed. */
async function readDecompressedHead(hostPath: string, compression: ArchiveCompression): Promise<Buffer | undefined> {
  const { stream, stop } = await decompress(hostPath, compression);
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= TAR_BLOCK) break;
    }
  } catch {
    return undefined; // not valid compressed data: an ordinary file
  } finally {
    stop();
  }
  return length >= TAR_BLOCK ? Buffer.concat(chunks).subarray(0, TAR_BLOCK) : undefined;
}

/**
 * A stream of the decompressed content. `finished` resolves once all of it was produced
 * (rejects if the decompressor failed); `stop` abandons it early.
 */
async function decompress(hostPath: string, compression: ArchiveCompression): Promise<{ stream: Readable; finished: Promise<void>; stop: () => void }> {
  const input = createReadStream(hostPath, { highWaterMark: CHUNK });
  if (compression === "uncompressed") {
    return { stream: input, finished: Promise.resolve(), stop: () => input.destroy() };
  }
  if (compression === "gzip") {
    const gunzip = createGunzip({ chunkSize: CHUNK });
    input.on("error", (error) => gunzip.destroy(error));
    input.pipe(gunzip);
    return {
      stream: gunzip,
      finished: Promise.resolve(),
      stop: () => {
        input.destroy();
        gunzip.destroy();
      },
    };
  }
  input.destroy();
  const command = COMMANDS[compression] as string;
  const child = await startCommand(command, ["-dc", "--", hostPath], {
    purpose: `reading the ${compression}-compressed archive ${hostPath}`,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr: Buffer[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
  let stopped = false;
  const finished = new Promise<void>((resolve, reject) => {
    child.once("close", (code) => {
      if (code === 0 || stopped) resolve();
      else reject(new BadArchiveError(`cannot decompress ${hostPath} with ${command}: ${Buffer.concat(stderr).toString("utf8").trim() || `exit code ${code}`}`));
    });
  });
  finished.catch(() => undefined); // observed by the caller when it cares
  return {
    stream: child.stdout as Readable,
    finished,
    stop: () => {
      stopped = true;
      child.stdout?.destroy();
      child.kill();
    },
  };
}

export interface UnpackOptions {
  /** How the archive is named in errors (default: its file name). */
  name?: string;
  /** The compression, when already known from detectArchive. */
  compression?: ArchiveCompression;
  /**
   * Creates a missing parent directory (destination-relative) of an entry that has no
   * directory entry of its own. Default: mkdir, root-owned, 0755. A layer writer uses it
   * to give the directory the metadata it has in the image below.
   */
  makeParent?: (relativePath: string) => Promise<void>;
}

/**
 * Extracts the tar archive at `hostPath` into `destHostDir` (created if missing; what is
 * there already stays unless an entry replaces it). Returns false, touching nothing, when
 * the file is not a tar archive (the caller copies it as is).
 */
export async function unpackArchive(hostPath: string, destHostDir: string, options: UnpackOptions = {}): Promise<boolean> {
  const compression = options.compression ?? (await detectArchive(hostPath));
  if (compression === undefined) return false;
  const name = options.name ?? basename(hostPath);
  await mkdir(destHostDir, { recursive: true });

  const { stream, finished, stop } = await decompress(hostPath, compression);
  const extract = createExtract({ allowUnknownFormat: true } as Parameters<typeof createExtract>[0]);
  // Settles with the feeding error (or undefined): handled from the start, awaited after the entries.
  const feeding = feedTar(extract, stream as AsyncIterable<Buffer>).then(
    () => undefined,
    (error: unknown) => {
      extract.destroy(error as Error);
      return error ?? new Error("reading the archive failed");
    },
  );
  const writer = new ArchiveWriter(name, destHostDir, options.makeParent);
  let failure: unknown;
  try {
    for await (const entry of extract) await writer.add(entry.header, entry as AsyncIterable<Buffer>);
    await writer.finish();
  } catch (error) {
    failure = error;
    extract.destroy();
    stop();
  }
  const fed = await feeding;
  if (failure !== undefined) throw describe(name, failure);
  if (fed !== undefined) throw describe(name, fed);
  await finished;
  return true;
}

function describe(name: string, error: unknown): unknown {
  if (error instanceof UserError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof (error as NodeJS.ErrnoException).syscall === "string") return error; // the file system refused: not the archive's fault
  return new BadArchiveError(`cannot unpack archive ${name}: ${message}`, "check that the file is a complete, uncorrupted tar archive");
}

/** Whether a relative symlink target, seen from directory `dir` (destination-relative), climbs above the destination. */
function climbsOut(dir: string, target: string): boolean {
  if (target.startsWith("/")) return false; // resolved against the image root, as Docker allows
  let depth = dir === "" ? 0 : dir.split("/").length;
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (depth === 0) return true;
      depth--;
    } else {
      depth++;
    }
  }
  return false;
}

/** uid, gid and times (seconds, fractional from PAX records) of a header. */
function metaOf(header: Header): EntryMeta {
  const pax = (header.pax ?? {}) as Record<string, string | undefined>;
  const number = (value: string | undefined, fallback: number) => {
    const parsed = value === undefined ? NaN : Number(value);
    return Number.isFinite(parsed) ? parsed : fallback;
  };
  const mtime = number(pax.mtime, header.mtime.getTime() / 1000);
  return { uid: number(pax.uid, header.uid), gid: number(pax.gid, header.gid), mtime, atime: number(pax.atime, mtime) };
}

/** Writes archive entries below a destination directory, refusing any that would leave it. */
class ArchiveWriter extends TarEntryWriter {
  constructor(
    private readonly archive: string,
    dest: string,
    private readonly makeParent: ((relativePath: string) => Promise<void>) | undefined,
  ) {
    super(dest);
  }

  protected unsafe(entry: string, reason: string): UnsafeArchiveEntryError {
    return new UnsafeArchiveEntryError(this.archive, entry, reason);
  }

  protected bad(entry: string, reason: string): BadArchiveError {
    return new BadArchiveError(`archive ${this.archive}: entry ${JSON.stringify(entry)}: ${reason}`);
  }

  protected linkOutsideReason(linkname: string, unsafe: string): string {
    return `it is a hard link to ${JSON.stringify(linkname)}, and ${unsafe.replace(/^it /, "that ")}`;
  }

  protected linkThroughSymlinkReason(linkname: string, dir: string): string {
    return `it is a hard link to ${JSON.stringify(linkname)}, whose parent ${JSON.stringify(dir)} is a symbolic link`;
  }

  protected missingLinkTargetReason(linkname: string): string {
    return `hard link target ${JSON.stringify(linkname)} does not exist (it must come earlier in the archive)`;
  }

  protected parentSymlinkReason(dir: string, target: string): string {
    return `its parent ${JSON.stringify(dir)} is a symbolic link (to ${JSON.stringify(target)}), and writing through it could leave the destination`;
  }

  async add(header: Header, body: AsyncIterable<Buffer>): Promise<void> {
    const name = header.name;
    const isFile = header.type === "file" || header.type === "contiguous-file";
    if (!isFile) await drain(body);
    const path = this.entryPath(name);
    if (path === "") {
      if (isFile) await drain(body);
      return; // the archive's root ("./"): the destination keeps its own metadata
    }
    return this.write(name, path, header, metaOf(header), body);
  }

  protected override checkSymlinkTarget(name: string, path: string, target: string): void {
    if (climbsOut(parentOf(path), target)) throw this.unsafe(name, `it is a symbolic link to ${JSON.stringify(target)}, which points outside the destination`);
  }

  protected async special(name: string, path: string, header: Header, meta: EntryMeta): Promise<void> {
    await this.prepare(name, path, false);
    const abs = this.abs(path);
    const mode = (header.mode & 0o7777).toString(8).padStart(4, "0");
    const type = header.type === "fifo" ? "p" : header.type === "character-device" ? "c" : "b";
    const args = type === "p" ? ["-m", mode, "--", abs, "p"] : ["-m", mode, "--", abs, type, String(header.devmajor), String(header.devminor)];
    try {
      await runCommand("mknod", args, { purpose: `creating ${header.type} ${JSON.stringify(name)} from archive ${this.archive}` });
    } catch (error) {
      if (error instanceof UserError) throw error;
      throw this.bad(name, `cannot create the ${header.type}: ${(error as Error).message}`);
    }
    if (this.asRoot) await lchown(abs, meta.uid, meta.gid);
    await lutimes(abs, meta.atime, meta.mtime);
  }

  /** A missing parent is made by the caller's makeParent when given (it must then exist). */
  protected override async statParent(name: string, dir: string): Promise<Stats | null> {
    const stat = await super.statParent(name, dir);
    if (stat !== null || !this.makeParent) return stat;
    await this.makeParent(dir);
    const made = await super.statParent(name, dir);
    if (made === null) throw this.bad(name, `its parent ${JSON.stringify(dir)} could not be created`);
    return made;
  }

  /** Root-owned, as Docker makes them. */
  protected override async createParent(abs: string): Promise<void> {
    await super.createParent(abs);
    if (this.asRoot) await chown(abs, 0, 0);
  }
}
