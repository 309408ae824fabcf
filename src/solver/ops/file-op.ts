import { chmod, copyFile, lchown, lstat, mkdir, symlink, utimes, writeFile, rm } from "node:fs/promises";
import { linkSync } from "node:fs";
import { join, posix } from "node:path";
import pLimit from "p-limit";
import type { CopyAction, FileOp, MkdirAction, MkfileAction } from "../../llb/index.ts";
import type { LayeredFS, LayerInfo } from "../store/index.ts";
import { applyChmod } from "../chmod.ts";
import { BuildStepError } from "../errors.ts";
import { resolveOwner } from "../users.ts";
import { LayerTree, type LayerFile, type MatchedSource, type SourceTree, type TreeEntry } from "./source-tree.ts";
import { detectArchive, unpackArchive } from "./unpack-archive.ts";
import { copyWithTar } from "./tar-copy.ts";
import { InodeGuard, fileIdentity, linkFiles, makeDirectories, setDirectoryMetadata, unchangedFiles, type PreviousFiles } from "./link-files.ts";

export interface FileOpContext {
  /** The new layer's directory: everything the op writes goes here. */
  layerDir: string;
  /** The filesystem the op changes (input 0), for paths that already exist. */
  base: LayeredFS;
  /** Where a copy action's sources come from. */
  source: (action: CopyAction) => SourceTree;
  /** The layer this step wrote last time: unchanged context files are linked from it. */
  previous?: PreviousFiles;
  /** The layers of the base, bottom to top (what links must not show twice). */
  baseLayers: readonly LayerInfo[];
}

export interface FileOpResult {
  /** Layer path → identity of the context files copied in bulk; undefined when they cannot be vouched for. */
  fileIdentities: ReadonlyMap<string, string> | undefined;
  /** Layers whose files the new layer links (and those they link from). */
  linkedFrom: string[];
  /** Bytes of the files linked from those layers. */
  linkedBytes: number;
}

interface Owner {
  uid: number;
  gid: number;
}

const ROOT: Owner = { uid: 0, gid: 0 };
/** From this many entries on, a context directory is copied with tar. */
const TAR_COPY_THRESHOLD = 64;
/** Copying is bound by per-file system calls, not bytes: keep many in flight. */
const copyLimit = pLimit(32);

/** Writes a file op's changes into a new layer directory (overlay upper-dir format). */
export async function applyFileOp(op: FileOp, context: FileOpContext): Promise<FileOpResult> {
  const writer = new LayerWriter(context.layerDir, context.base, context.previous);
  const linkedFrom = new Set<string>();
  const guard = new InodeGuard(context.baseLayers);
  for (const action of op.actions) {
    if (action.action === "mkdir") await mkdirAction(writer, action);
    else if (action.action === "mkfile") await mkfileAction(writer, action);
    else await copyAction(writer, action, context.source(action), { guard, linkedFrom });
  }
  if (writer.linkedPrevious && context.previous) for (const layer of context.previous.inodesOf) linkedFrom.add(layer);
  return { fileIdentities: writer.fileIdentities, linkedFrom: [...linkedFrom], linkedBytes: writer.linkedBytes };
}

async function ownerFor(writer: LayerWriter, spec: CopyAction["chown"]): Promise<Owner | undefined> {
  if (!spec) return undefined;
  return resolveOwner(spec, (path) => writer.readBaseFile(path));
}

async function mkdirAction(writer: LayerWriter, action: MkdirAction): Promise<void> {
  const owner = (await ownerFor(writer, action.chown)) ?? ROOT;
  const path = await writer.resolveParent(action.path);
  await writer.ensureDirectory(path, owner, action.mode);
}

async function mkfileAction(writer: LayerWriter, action: MkfileAction): Promise<void> {
  const owner = (await ownerFor(writer, action.chown)) ?? ROOT;
  const path = await writer.resolveParent(action.path);
  await writer.ensureDirectory(posix.dirname(path), ROOT);
  writer.fileIdentities?.delete(path);
  const host = writer.hostPath(path);
  await rm(host, { recursive: true, force: true });
  await writeFile(host, action.data, { mode: action.mode });
  await chmod(host, action.mode);
  await lchown(host, owner.uid, owner.gid);
}

/**
 * COPY/ADD semantics: a directory's contents go into the destination; a file
 * goes to `dest/<name>` when the destination is a directory (trailing `/`, or
 * an existing directory), else to `dest` itself; several sources need a
 * directory destination.
 */
async function copyAction(
  writer: LayerWriter,
  action: CopyAction,
  tree: SourceTree,
  layerLinks: { guard: InodeGuard; linkedFrom: Set<string> },
): Promise<void> {
  const matched = await tree.match(action.sources, action.excludes ?? []);
  const chownOwner = await ownerFor(writer, action.chown);
  const destPath = await writer.resolveParent(action.dest.replace(/\/+$/, "") || "/");
  const destIsDirectory = action.dest.endsWith("/") || (await writer.isDirectory(destPath));
  const copiesFiles = matched.filter((source) => source.entry.type !== "dir");
  if (!destIsDirectory && (matched.length > 1 || (copiesFiles.length > 0 && action.parents))) {
    throw new BuildStepError(`copying ${matched.length} sources to "${action.dest}": the destination must be a directory and end with a /`, {
      hint: `write the destination as ${action.dest}/`,
    });
  }
  const ownerOf = (entry: TreeEntry): Owner => chownOwner ?? (tree.keepsOwnership ? { uid: entry.uid, gid: entry.gid } : ROOT);
  const modeOf = (entry: TreeEntry): number => (action.chmod ? applyChmod(action.chmod, entry.mode, entry.type === "dir") : entry.mode);
  const parentOwner = chownOwner ?? ROOT;

  for (const source of matched) {
    const target = targetPath(source, destPath, destIsDirectory, action.parents === true);
    if (source.entry.type === "dir") {
      await writer.ensureDirectory(target, parentOwner);
      await writer.setMetadata(target, ownerOf(source.entry), modeOf(source.entry));
      if (!tree.keepsOwnership && source.children.length >= TAR_COPY_THRESHOLD && source.entry.hostPath) {
        await copyContextDirectory(writer, source, target, { owner: chownOwner ?? ROOT, modeOf, ...(action.chmod ? { chmod: action.chmod } : {}) });
        continue;
      }
      // (Without the privilege to mount a view of the stage's layers, entry by entry below.)
      const view = tree instanceof LayerTree && source.children.length >= TAR_COPY_THRESHOLD ? await tree.viewDir() : undefined;
      if (tree instanceof LayerTree && view !== undefined) {
        await copyStageDirectory(writer, tree, view, source, target, layerLinks, { ...(chownOwner ? { owner: chownOwner } : {}), ...(action.chmod ? { chmod: action.chmod } : {}) });
        continue;
      }
      // Directories first, in order (parents before children); then the files, many at a time.
      for (const child of source.children) {
        if (child.type === "dir") await writer.writeEntry(posix.join(target, child.path), child, ownerOf(child), modeOf(child));
      }
      const files = source.children.filter((child) => child.type !== "dir");
      await Promise.all(files.map((child) => copyLimit(() => writer.writeEntry(posix.join(target, child.path), child, ownerOf(child), modeOf(child)))));
    } else {
      // ADD: a local tar archive is unpacked into the destination instead of being copied.
      if (action.unpackArchives && source.entry.type === "file" && source.entry.hostPath !== undefined) {
        const compression = await detectArchive(source.entry.hostPath);
        if (compression !== undefined) {
          // What the archive overwrites is not known here: this layer's files are not recorded for reuse.
          writer.fileIdentities = undefined;
          await writer.ensureDirectory(destPath, parentOwner);
          await unpackArchive(source.entry.hostPath, writer.hostPath(destPath), {
            name: source.source,
            compression,
            makeParent: (relative) => writer.ensureDirectory(posix.join(destPath, relative), ROOT),
          });
          continue;
        }
      }
      await writer.ensureDirectory(posix.dirname(target), parentOwner);
      await writer.writeEntry(target, source.entry, ownerOf(source.entry), modeOf(source.entry));
    }
  }
}

/**
 * A large directory from the context: files unchanged since the step's last run are linked
 * from its layer, the rest goes through one tar pipeline instead of a system call per file.
 */
async function copyContextDirectory(
  writer: LayerWriter,
  source: MatchedSource,
  target: string,
  options: { owner: Owner; chmod?: string; modeOf: (entry: TreeEntry) => number },
): Promise<void> {
  const toDir = writer.hostPath(target);
  const unchanged = writer.fileIdentities
    ? unchangedFiles({
        children: source.children,
        layerPath: target,
        identityOf: (child) => fileIdentity(child, options.modeOf(child), options.owner),
        previous: writer.previous,
        record: writer.fileIdentities,
      })
    : new Map<TreeEntry, string>();
  writer.wroteInBulk(target, source.children);
  const linked = await linkFiles(source.children, toDir, unchanged);
  if (linked.size > 0) writer.linkedPrevious = true;
  for (const child of linked) writer.linkedBytes += child.size ?? 0;
  await copyWithTar({
    fromDir: source.entry.hostPath as string,
    paths: source.children.filter((child) => !linked.has(child)).map((child) => child.path),
    toDir,
    owner: options.owner,
    ...(options.chmod ? { chmod: options.chmod } : {}),
  });
}

/**
 * A large directory of another stage. Kept as they are, its files are linked from the layers
 * that hold them; the rest is copied by tar from `view`, the read-only overlay of those layers.
 */
async function copyStageDirectory(
  writer: LayerWriter,
  tree: LayerTree,
  view: string,
  source: MatchedSource,
  target: string,
  layerLinks: { guard: InodeGuard; linkedFrom: Set<string> },
  options: { owner?: Owner; chmod?: string },
): Promise<void> {
  for (const child of source.children) writer.fileIdentities?.delete(posix.join(target, child.path));
  writer.wroteInBulk(target, source.children);
  const toDir = writer.hostPath(target);
  const keptAsTheyAre = options.owner === undefined && options.chmod === undefined;
  const linkable = keptAsTheyAre ? layerLinks.guard.linkable(await layerFiles(tree, source)) : new Map<TreeEntry, LayerFile>();
  const linked = await linkFiles(source.children, toDir, new Map([...linkable].map(([child, file]) => [child, file.hostPath])));
  for (const child of linked) {
    const file = linkable.get(child) as LayerFile;
    writer.linkedBytes += child.size ?? 0;
    layerLinks.guard.linked(file);
    for (const layer of file.inodesOf) layerLinks.linkedFrom.add(layer);
  }
  const rest = source.children.filter((child) => !linked.has(child));
  if (rest.every((child) => child.type === "dir") && (await makeDirectories(rest, toDir))) {
    // Only directories left: their metadata, as tar would set it, without mounting anything.
    await setDirectoryMetadata(rest, toDir);
    return;
  }
  await copyWithTar({ fromDir: join(view, source.source), paths: rest.map((child) => child.path), toDir, ...options });
}

/** The regular files among a source's children, each with the file in a layer that holds it. */
async function layerFiles(tree: LayerTree, source: MatchedSource): Promise<Map<TreeEntry, LayerFile>> {
  const files = source.children.filter((child) => child.type === "file");
  const found = await Promise.all(files.map((child) => tree.layerFile(posix.join("/", source.source, child.path))));
  const layerFiles = new Map<TreeEntry, LayerFile>();
  for (const [index, child] of files.entries()) {
    const file = found[index];
    if (file !== undefined) layerFiles.set(child, file);
  }
  return layerFiles;
}

function targetPath(source: MatchedSource, dest: string, destIsDirectory: boolean, parents: boolean): string {
  if (parents) {
    const relative = source.source.replace(/^\/+/, "");
    return source.entry.type === "dir" && relative === "" ? dest : posix.join(dest, relative);
  }
  if (source.entry.type === "dir") return dest;
  return destIsDirectory ? posix.join(dest, posix.basename(source.source)) : dest;
}

/** Writes into a layer directory, consulting the base filesystem for what exists below. */
class LayerWriter {
  /** Directories this op created where the base has nothing: their children need no existence checks. */
  private readonly newDirectories = new Set<string>();
  /** Paths this op wrote, so a later source writing the same path replaces it. */
  private readonly written = new Set<string>();
  /** Context files written in bulk, by layer path (see link-files.ts); a path written again otherwise leaves it. */
  fileIdentities: Map<string, string> | undefined = new Map();
  /** Whether a file was linked from the previous run's layer. */
  linkedPrevious = false;
  /** Bytes of the files linked from other layers. */
  linkedBytes = 0;

  constructor(
    private readonly layerDir: string,
    private readonly base: LayeredFS,
    /** The layer this step wrote last time, to link unchanged context files from. */
    readonly previous: PreviousFiles | undefined,
  ) {}

  hostPath(path: string): string {
    return join(this.layerDir, path);
  }

  async readBaseFile(path: string): Promise<Buffer | undefined> {
    const resolved = await this.base.resolve(path, { followFinal: true });
    const stat = await this.base.lstat(resolved);
    return stat?.type === "file" ? this.base.readFile(resolved) : undefined;
  }

  /** Resolves symlinks in the parent directories of `path` inside the image root; the last component stays. */
  async resolveParent(path: string): Promise<string> {
    const clean = posix.normalize(`/${path}`);
    if (clean === "/") return "/";
    const parent = await this.base.resolve(posix.dirname(clean), { followFinal: true });
    return posix.join(parent, posix.basename(clean));
  }

  async isDirectory(path: string): Promise<boolean> {
    const written = await lstat(this.hostPath(path)).catch(() => undefined);
    if (written) return written.isDirectory();
    const resolved = await this.base.resolve(path, { followFinal: true });
    return (await this.base.lstat(resolved))?.type === "dir";
  }

  /** Creates `path` and its parents in the layer: existing directories keep their metadata, new ones get `owner` and `mode`. */
  async ensureDirectory(path: string, owner: Owner, mode = 0o755): Promise<void> {
    let current = "/";
    for (const component of path.split("/").filter(Boolean)) {
      current = posix.join(current, component);
      const host = this.hostPath(current);
      const written = await lstat(host).catch(() => undefined);
      if (written?.isDirectory()) continue;
      const below = await this.base.lstat(current);
      if (written || (below && below.type !== "dir")) {
        throw new BuildStepError(`cannot create directory ${current}: a file is in the way`, { hint: "copy to a different destination" });
      }
      await mkdir(host);
      if (below) {
        await chmod(host, below.mode);
        await lchown(host, below.uid, below.gid);
        await utimes(host, below.mtimeMs / 1000, below.mtimeMs / 1000);
      } else {
        await chmod(host, mode);
        await lchown(host, owner.uid, owner.gid);
        this.newDirectories.add(current);
      }
    }
  }

  /** Paths a bulk copy (tar, links) wrote below `target`: a later source writing one of them must replace it. */
  wroteInBulk(target: string, children: readonly TreeEntry[]): void {
    for (const child of children) this.written.add(posix.join(target, child.path));
  }

  async setMetadata(path: string, owner: Owner, mode: number): Promise<void> {
    const host = this.hostPath(path);
    await chmod(host, mode & 0o7777);
    await lchown(host, owner.uid, owner.gid);
  }

  async writeEntry(path: string, entry: TreeEntry, owner: Owner, mode: number): Promise<void> {
    const host = this.hostPath(path);
    // In a directory this op created where the base had none, nothing can be in the way.
    const parentIsNew = this.newDirectories.has(posix.dirname(path)) && !this.written.has(path);
    const existing = parentIsNew ? undefined : await lstat(host).catch(() => undefined);
    this.written.add(path);
    this.fileIdentities?.delete(path);
    if (entry.type === "dir") {
      if (!existing?.isDirectory()) {
        if (existing) await rm(host, { recursive: true, force: true });
        const below = parentIsNew ? undefined : await this.base.lstat(path);
        if (below && below.type !== "dir") throw new BuildStepError(`cannot copy directory to ${path}: a file is in the way`);
        await mkdir(host);
        if (!below) this.newDirectories.add(path);
      }
      await this.setMetadata(path, owner, mode);
      return;
    }
    if (existing) await rm(host, { recursive: true, force: true });
    if (entry.type === "symlink") {
      await symlink(entry.linkTarget ?? "", host);
      if (owner.uid !== 0 || owner.gid !== 0) await lchown(host, owner.uid, owner.gid);
      return;
    }
    if (!entry.hostPath) throw new BuildStepError(`cannot read ${path}: its content is not available`);
    const identity = fileIdentity(entry, mode, owner);
    if (identity !== undefined && this.linkPrevious(path, identity, entry.size ?? 0)) {
      this.fileIdentities?.set(path, identity);
      return;
    }
    // copyFile gives the copy the source's mode and us as owner: change only what differs.
    await copyFile(entry.hostPath, host);
    if (owner.uid !== 0 || owner.gid !== 0) await lchown(host, owner.uid, owner.gid);
    // Writing the content and chown clear setuid/setgid: set the mode after them when it matters.
    if ((mode & 0o7777) !== (entry.mode & 0o7777) || (mode & 0o6000) !== 0) await chmod(host, mode & 0o7777);
    const mtime = entry.mtimeMs ?? (await lstat(entry.hostPath)).mtimeMs;
    await utimes(host, mtime / 1000, mtime / 1000);
    if (identity !== undefined) this.fileIdentities?.set(path, identity);
  }

  /** Links `path` from the previous run's layer if that wrote the same file there. */
  private linkPrevious(path: string, identity: string, size: number): boolean {
    const file = this.previous?.fileFor(path, identity);
    if (file === undefined) return false;
    try {
      linkSync(file, this.hostPath(path));
      this.linkedPrevious = true;
      this.linkedBytes += size;
      return true;
    } catch {
      return false; // pruned meanwhile: copy it
    }
  }
}
