import { createHash } from "node:crypto";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import type { BlobStore } from "./blob-store.ts";
import { describeFsError, errnoCode } from "./errors.ts";
import type { TempArea } from "./temp-area.ts";
import { listDir } from "./list-dir.ts";

/** What a stored image name points at: a manifest or an index blob in the content store. */
export interface ImageRef {
  /** The fully qualified reference, e.g. "docker.io/library/alpine:3.20". */
  name: string;
  target: { mediaType: string; digest: string; size: number };
  /** When the name was (last) given to this target (ISO 8601). */
  createdAt: string;
  /** Where the image came from: "pull", "build" or "load". */
  origin: string;
  /** For a pulled image: the digest the registry served for the name (an index's when it was one). */
  repoDigest?: string;
}

/**
 * Image names under images/<sha256 of the name>.json, one file each, replaced whole by
 * rename: a tag and an rmi of the same name race like two writers of a cache record
 * (the last one wins) and a reader never sees half a file.
 */
export class ImageRefs {
  constructor(
    private readonly dir: string,
    private readonly temp: TempArea,
    private readonly blobs: BlobStore,
  ) {}

  private pathOf(name: string): string {
    return join(this.dir, `${createHash("sha256").update(name).digest("hex")}.json`);
  }

  async get(name: string): Promise<ImageRef | undefined> {
    return readRef(this.pathOf(name));
  }

  /**
   * Names `ref.target`. The blobs it reaches are touched first (marking their use), so a
   * prune running at the same moment either sees the new name or sees the blobs as used.
   */
  async put(ref: ImageRef): Promise<void> {
    for (const digest of await reachableFrom(ref.target.digest, (digest) => this.readJsonBlob(digest))) await this.blobs.has(digest);
    await writeFileAtomic(this.pathOf(ref.name), JSON.stringify(ref), { tempPath: this.temp.path("image-ref"), fsync: true });
  }

  /** Returns whether the name existed. */
  async remove(name: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(name));
      return true;
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return false;
      throw describeFsError(error, "remove", this.pathOf(name));
    }
  }

  async list(): Promise<ImageRef[]> {
    const names = await listDir(this.dir);
    const refs = await Promise.all(names.filter((name) => name.endsWith(".json")).map((name) => readRef(join(this.dir, name))));
    return refs.filter((ref): ref is ImageRef => ref !== undefined).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Every blob digest a stored name reaches (indexes → manifests → config and layers); prune keeps these. */
  async reachableBlobs(): Promise<Set<string>> {
    const reached = new Set<string>();
    for (const ref of await this.list()) {
      for (const digest of await reachableFrom(ref.target.digest, (digest) => this.readJsonBlob(digest))) reached.add(digest);
    }
    return reached;
  }

  private async readJsonBlob(digest: string): Promise<unknown> {
    try {
      return JSON.parse(await readFile(this.blobs.path(digest), "utf8")) as unknown;
    } catch {
      // A missing or unreadable blob reaches nothing further (a pulled index lists platforms never fetched).
      return undefined;
    }
  }
}

async function readRef(path: string): Promise<ImageRef | undefined> {
  try {
    const ref = JSON.parse(await readFile(path, "utf8")) as ImageRef;
    return typeof ref.name === "string" && typeof ref.target?.digest === "string" ? ref : undefined;
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || error instanceof SyntaxError) return undefined;
    throw describeFsError(error, "read", path);
  }
}

type JsonDescriptor = { digest?: unknown };

/** The digest itself, and for manifests and indexes everything they list. */
async function reachableFrom(digest: string, read: (digest: string) => Promise<unknown>): Promise<string[]> {
  const found: string[] = [];
  const pending = [digest];
  const seen = new Set<string>();
  while (pending.length > 0) {
    const next = pending.pop() as string;
    if (seen.has(next)) continue;
    seen.add(next);
    found.push(next);
    const document = (await read(next)) as { config?: JsonDescriptor; layers?: JsonDescriptor[]; manifests?: JsonDescriptor[] } | undefined;
    if (document === undefined || typeof document !== "object") continue;
    const children = [document.config, ...(Array.isArray(document.layers) ? document.layers : []), ...(Array.isArray(document.manifests) ? document.manifests : [])];
    for (const child of children) {
      if (typeof child?.digest === "string" && /^sha256:[0-9a-f]{64}$/.test(child.digest)) {
        // Config and layer blobs are not JSON documents worth reading: only manifests and indexes list more.
        if (child === document.config || document.layers?.includes(child)) {
          if (!seen.has(child.digest)) {
            seen.add(child.digest);
            found.push(child.digest);
          }
        } else pending.push(child.digest);
      }
    }
  }
  return found;
}
