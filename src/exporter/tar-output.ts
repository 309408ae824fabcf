import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { lstat, mkdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack as createPack, type Pack } from "tar-stream";
import { ExporterError } from "./errors.ts";
import { allOrFirstError, type TarHeader } from "./tar-util.ts";

/** Where an archive goes: a file path, or a stream (standard output...), which is ended at the end. */
export type TarDestination = string | NodeJS.WritableStream;

/** Header fields of a metadata entry in an archive: owner root, mtime 0, so the same content gives the same bytes. */
export const FILE_ENTRY = { type: "file", mode: 0o644, uid: 0, gid: 0, mtime: new Date(0) } as const satisfies Partial<TarHeader>;
export const DIR_ENTRY = { type: "directory", mode: 0o755, uid: 0, gid: 0, mtime: new Date(0) } as const satisfies Partial<TarHeader>;

/**
 * Streams the tar that `produce` packs into `dest`. A file path is written to a temporary
 * file beside it, then renamed, so a failed export leaves no half archive (or the previous
 * one); a path that is not a regular file (/dev/stdout, a symlink, a fifo) is written through.
 */
export async function writeTarOutput(dest: TarDestination, produce: (pack: Pack) => Promise<void>): Promise<void> {
  if (typeof dest !== "string") return packInto(dest, produce);
  const [link, target] = await Promise.all([lstat(dest).catch(() => undefined), stat(dest).catch(() => undefined)]);
  if (target?.isDirectory()) {
    throw new ExporterError("ERR_BAD_OPTION", `cannot write an archive to ${dest}: it is a directory`, { hint: "give a file name, e.g. dest=image.tar" });
  }
  // A symlink (/dev/stdout) or a device or fifo is written through, as a shell redirection would; never replaced.
  if (link && !link.isFile()) return packInto(createWriteStream(dest), produce);
  await mkdir(dirname(dest), { recursive: true });
  const tmp = join(dirname(dest), `.${basename(dest)}.${randomUUID()}.tmp`);
  try {
    await packInto(createWriteStream(tmp), produce);
    await rename(tmp, dest);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

async function packInto(sink: NodeJS.WritableStream, produce: (pack: Pack) => Promise<void>): Promise<void> {
  const pack = createPack();
  const producing = produce(pack).then(
    () => pack.finalize(),
    (error: unknown) => {
      pack.destroy(error as Error);
      throw error;
    },
  );
  await allOrFirstError([producing, pipeline(Readable.from(pack, { objectMode: false }), sink)]);
}
