import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, open, readdir, rename, stat, unlink, utimes } from "node:fs/promises";
import { join, resolve } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { ensureDir } from "./ensure-dir.ts";
import { listDir } from "./list-dir.ts";
import { StoreError, describeFsError, errnoCode } from "./errors.ts";
import { parseDigest, type ParsedDigest } from "./names.ts";
import { recordUse, type PruneGate } from "./prune-gate.ts";
import type { TempArea } from "./temp-area.ts";

/** Blobs are never modified in place: read-only files make an accidental write fail loudly. */
const BLOB_MODE = 0o444;
const READ_CHUNK = 1 << 20;

/** Content-addressed blobs under content/blobs/<algorithm>/<hex>, verified before they appear. */
export class BlobStore {
  constructor(
    private readonly dir: string,
    private readonly temp: TempArea,
    private readonly gate: PruneGate,
  ) {}

  path(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.dir, algorithm, hex);
  }

  async has(digest: string): Promise<boolean> {
    return recordUse(this.path(digest), this.gate);
  }

  async write(data: Buffer | string): Promise<string> {
    const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    if (await this.has(digest)) return digest;
    const target = this.path(digest);
    await writeFileAtomic(target, data, { tempPath: this.temp.path("blob"), fsync: true, mode: BLOB_MODE, mtime: new Date() });
    return digest;
  }

  /**
   * Stores the file at `path`, checking its digest first. A file under the root's tmp/ is
   * moved in; any other file is copied (hashing while copying, so each byte is read once).
   * On a digest mismatch nothing is stored and the source file is left as it was.
   * `verified`: the caller computed `expectedDigest` from these very bytes as it wrote them
   * (a download, a compressed layer, an unpacked archive), so a file under tmp/ moves in unread.
   */
  async writeFromFile(path: string, expectedDigest?: string, options: { verified?: boolean } = {}): Promise<string> {
    const expected = expectedDigest === undefined ? undefined : parseDigest(expectedDigest);
    const algorithm = expected?.algorithm ?? "sha256";
    await ensureDir(join(this.dir, algorithm));
    const source = resolve(path);
    if (!this.temp.holds(source)) return this.copyIn(source, algorithm, expected);
    if (options.verified === true && expectedDigest !== undefined) {
      await this.adopt(source, expectedDigest);
      return expectedDigest;
    }
    return this.moveIn(source, algorithm, expected);
  }

  private async moveIn(source: string, algorithm: ParsedDigest["algorithm"], expected: ParsedDigest | undefined): Promise<string> {
    const hash = createHash(algorithm);
    try {
      for await (const chunk of createReadStream(source, { highWaterMark: READ_CHUNK })) hash.update(chunk as Buffer);
    } catch (error) {
      throw describeFsError(error, "read", source);
    }
    const digest = checkDigest(`${algorithm}:${hash.digest("hex")}`, expected, source);
    await this.adopt(source, digest);
    return digest;
  }

  private async adopt(source: string, digest: string): Promise<void> {
    const target = this.path(digest);
    try {
      const handle = await open(source, "r");
      try {
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await chmod(source, BLOB_MODE);
      const now = new Date();
      await utimes(source, now, now);
      await rename(source, target);
    } catch (error) {
      throw describeFsError(error, "store the blob", target);
    }
  }

  private async copyIn(source: string, algorithm: ParsedDigest["algorithm"], expected: ParsedDigest | undefined): Promise<string> {
    const hash = createHash(algorithm);
    const staging = this.temp.path("blob");
    let digest: string;
    try {
      const out = await open(staging, "wx", BLOB_MODE);
      try {
        for await (const chunk of createReadStream(source, { highWaterMark: READ_CHUNK })) {
          hash.update(chunk as Buffer);
          await out.write(chunk as Buffer);
        }
        await out.datasync();
      } finally {
        await out.close();
      }
      digest = checkDigest(`${algorithm}:${hash.digest("hex")}`, expected, source);
      const now = new Date();
      await utimes(staging, now, now);
      await rename(staging, this.path(digest));
    } catch (error) {
      await unlink(staging).catch(() => undefined);
      throw describeFsError(error, "store a blob from", source);
    }
    return digest;
  }
}

function checkDigest(actual: string, expected: ParsedDigest | undefined, source: string): string {
  if (expected !== undefined && actual !== `${expected.algorithm}:${expected.hex}`) {
    throw new StoreError({
      code: "EDIGEST",
      message: `digest mismatch for ${source}: expected ${expected.algorithm}:${expected.hex}, got ${actual}; nothing was stored`,
      path: source,
      hint: "the data is corrupt or incomplete (an interrupted or tampered download?): fetch it again",
    });
  }
  return actual;
}

/** A blob found by `listBlobs` (for du and prune). */
export interface StoredBlob {
  path: string;
  size: number;
  lastUsedAt: number;
}

export async function listBlobs(blobsDir: string): Promise<StoredBlob[]> {
  const found: StoredBlob[] = [];
  for (const algorithm of await readdir(blobsDir)) {
    for (const name of await listDir(join(blobsDir, algorithm))) {
      const path = join(blobsDir, algorithm, name);
      try {
        const stats = await stat(path);
        found.push({ path, size: stats.size, lastUsedAt: stats.mtimeMs });
      } catch (error) {
        if (errnoCode(error) !== "ENOENT") throw describeFsError(error, "read", path);
      }
    }
  }
  return found;
}
