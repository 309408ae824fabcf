import { createReadStream } from "node:fs";
import { readlink } from "node:fs/promises";
import type { Pack } from "tar-stream";
import { ExporterError } from "./errors.ts";
import { addTarEntry, setOwnerAndTime, type TarHeader } from "./tar-util.ts";
import { deviceNumbers, inodeKey, type LayerDirEntry } from "./walk.ts";

/** Files up to this size are read whole, a few ahead of the tar writer, instead of streamed. */
const SMALL_FILE = 64 * 1024;
const CHUNK = 64 * 1024;

export const isSmallFile = (entry: LayerDirEntry): boolean => entry.stat.size <= SMALL_FILE;

/**
 * Writes files, directories, symlinks, devices and fifos as tar entries: mode, owner, mtime
 * (through `time`, which may clamp it), and hard links (a later path of an inode already
 * written becomes a `link` entry to the first). Sockets are left out, as docker and BuildKit do.
 * Whiteouts are the caller's (a layer tar marks them, a filesystem tar has none).
 */
export class FsEntryWriter {
  /** dev:ino → tar name of the first path of a multiply-linked file. */
  private readonly links = new Map<string, string>();

  constructor(
    private readonly pack: Pack,
    private readonly time: (mtimeMs: number) => number,
  ) {}

  async add(entry: LayerDirEntry): Promise<void> {
    const { stat, path } = entry;
    const header = (fields: TarHeader) => setOwnerAndTime(fields, stat.uid, stat.gid, this.time(stat.mtimeMs));
    switch (entry.kind) {
      case "dir":
        await addTarEntry(this.pack, header({ name: `${path}/`, type: "directory", mode: stat.mode }));
        return;
      case "whiteout":
      case "socket":
        return;
      case "symlink":
        await addTarEntry(this.pack, header({ name: path, type: "symlink", mode: stat.mode, linkname: await readlink(entry.abs) }));
        return;
      case "char":
      case "block": {
        if (await this.hardLink(entry, header)) return;
        const { major, minor } = deviceNumbers(stat.rdev);
        const type = entry.kind === "char" ? "character-device" : "block-device";
        await addTarEntry(this.pack, header({ name: path, type, mode: stat.mode, devmajor: major, devminor: minor }));
        return;
      }
      case "fifo":
        if (await this.hardLink(entry, header)) return;
        await addTarEntry(this.pack, header({ name: path, type: "fifo", mode: stat.mode }));
        return;
      case "file": {
        if (await this.hardLink(entry, header)) return;
        const fields = header({ name: path, type: "file", mode: stat.mode, size: stat.size });
        if (entry.content) {
          const data = await entry.content;
          if (data.length !== stat.size) throw changed(entry, data.length);
          await addTarEntry(this.pack, fields, data);
        } else {
          await addTarEntry(this.pack, fields, sizedStream(entry));
        }
        return;
      }
    }
  }

  /** Writes a tar hard link if this inode was already written under another name. */
  private async hardLink(entry: LayerDirEntry, header: (fields: TarHeader) => TarHeader): Promise<boolean> {
    if (entry.stat.nlink < 2) return false;
    const key = await inodeKey(entry);
    const first = this.links.get(key);
    if (first === undefined) {
      this.links.set(key, entry.path);
      return false;
    }
    await addTarEntry(this.pack, header({ name: entry.path, type: "link", mode: entry.stat.mode, linkname: first }));
    return true;
  }
}

/** The file's content, exactly `stat.size` bytes; a file that shrank while being read is an error. */
async function* sizedStream(entry: LayerDirEntry): AsyncGenerator<Buffer> {
  let bytes = 0;
  for await (const chunk of createReadStream(entry.abs, { end: entry.stat.size - 1, highWaterMark: CHUNK })) {
    bytes += (chunk as Buffer).length;
    yield chunk as Buffer;
  }
  if (bytes !== entry.stat.size) throw changed(entry, bytes);
}

function changed(entry: LayerDirEntry, bytes: number): ExporterError {
  return new ExporterError(
    "ERR_LAYER_SOURCE",
    `${entry.abs} changed while it was being written (${entry.stat.size} bytes when listed, ${bytes} when read): ` +
      "layers must not be modified during export",
  );
}
