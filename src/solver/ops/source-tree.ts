import type { Stats } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import type { LocalContext, SelectedEntry, Selection } from "../../context/index.ts";
import { IgnoreMatcher, hasMeta, matchPath, parseDockerignore } from "../../parser/index.ts";
import { LayeredFS, type LayerInfo } from "../store/index.ts";
import { BuildStepError } from "../errors.ts";

/** One file, directory or symlink that a COPY reads. */
export interface TreeEntry {
  /** Path relative to the matched source ("" for the matched entry itself). */
  path: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  uid: number;
  gid: number;
  linkTarget?: string;
  /** Modification time to keep on the copy, when known. */
  mtimeMs?: number;
  /** Where a file's content is on the host. */
  hostPath?: string;
  /** A file's size in bytes, when known. */
  size?: number;
  /** A context file's content sha256 (hex), as the step's cache key saw it. */
  digest?: string;
}

export interface MatchedSource {
  /** The source as matched, relative to the source root. */
  source: string;
  entry: TreeEntry;
  /** A directory's contents, recursively, parents before children. */
  children: TreeEntry[];
}

/** Where COPY sources come from: the build context, or another stage's or image's filesystem. */
export interface SourceTree {
  match(patterns: readonly string[], excludes: readonly string[]): Promise<MatchedSource[]>;
  /** Context files become root-owned; files from images keep their owners. */
  readonly keepsOwnership: boolean;
}

/** Sources from a local context, already selected (the cache key needed the same selection). */
export class ContextTree implements SourceTree {
  readonly keepsOwnership = false;
  constructor(
    private readonly selection: Selection,
    private readonly context: LocalContext,
  ) {}

  async match(): Promise<MatchedSource[]> {
    const matched: MatchedSource[] = [];
    for (const selected of this.selection.entries) matched.push(await this.fromSelected(selected));
    return matched;
  }

  private async fromSelected(selected: SelectedEntry): Promise<MatchedSource> {
    const toEntry = async (file: SelectedEntry["stat"]): Promise<TreeEntry> => ({
      path: file.path,
      type: file.type,
      mode: file.mode,
      uid: file.uid,
      gid: file.gid,
      mtimeMs: file.mtimeMs,
      size: file.size,
      ...(file.linkTarget !== undefined ? { linkTarget: file.linkTarget } : {}),
      hostPath: file.hostPath,
      // Served from memory: the cache key read every selected file already.
      ...(file.type === "file" ? { digest: await this.context.fileDigest(file) } : {}),
    });
    const children: TreeEntry[] = [];
    for (const child of selected.children ?? []) children.push(await toEntry(child));
    return { source: selected.source, entry: { ...(await toEntry(selected.stat)), path: "" }, children };
  }
}

/** A regular file as one layer holds it. */
export interface LayerFile {
  hostPath: string;
  /** "dev:ino". */
  inode: string;
  /** The layer that holds it and those it links from: whose inode it may be. */
  inodesOf: string[];
}

/** Sources from a layered filesystem (COPY --from a stage or an image). */
export class LayerTree implements SourceTree {
  readonly keepsOwnership = true;
  /** The layers behind `fs`, for copies that mount them instead of walking them. */
  readonly layers: readonly LayerInfo[];

  /**
   * @param view a directory where the kernel merges these layers (a read-only
   * overlay, mounted on first use); walking it costs one system call per
   * entry instead of one per entry and layer.
   */
  constructor(layers: readonly LayerInfo[], view?: () => Promise<string>) {
    this.layers = layers;
    this.fs = new LayeredFS(layers);
    this.view = view;
  }

  private readonly fs: LayeredFS;
  private readonly view: (() => Promise<string>) | undefined;
  /** Layers never change: a selection is walked once, however many steps read it. */
  private readonly matches = new Map<string, Promise<MatchedSource[]>>();

  match(patterns: readonly string[], excludes: readonly string[]): Promise<MatchedSource[]> {
    const key = JSON.stringify([patterns, excludes]);
    let matched = this.matches.get(key);
    if (!matched) {
      matched = this.walkMatches(patterns, excludes);
      this.matches.set(key, matched);
      matched.catch(() => this.matches.delete(key));
    }
    return matched;
  }

  private async walkMatches(patterns: readonly string[], excludes: readonly string[]): Promise<MatchedSource[]> {
    const exclude = excludes.length > 0 ? new IgnoreMatcher(parseDockerignore(excludes.join("\n"), "--exclude")) : undefined;
    const matched: MatchedSource[] = [];
    for (const pattern of patterns) {
      const paths = await this.expand(pattern);
      if (paths.length === 0) {
        throw new BuildStepError(hasMeta(pattern) ? `no source files were specified: "${pattern}" matches nothing` : `"${pattern}" not found`, {
          hint: "check the path in the source stage or image",
        });
      }
      for (const path of paths) {
        const entry = await this.entry(path, "");
        if (!entry) throw new BuildStepError(`"${pattern}" not found`);
        const children = entry.type !== "dir" ? [] : this.view ? await walkDirectory(join(await this.view(), path), "", exclude) : await this.walk(path, "", exclude);
        matched.push({ source: path.replace(/^\/+/, ""), entry, children });
      }
    }
    return matched;
  }

  /** The directory where the kernel merges these layers (mounted on first use), if this process may mount. */
  viewDir(): Promise<string | undefined> {
    return this.view ? this.view() : Promise.resolve(undefined);
  }

  /** The file in one of the layers behind a regular file (`path`: absolute, as matched and walked), to link it. */
  async layerFile(path: string): Promise<LayerFile | undefined> {
    const file = await this.fs.regularFileAt(path);
    // Inode numbers beyond 2^53 are not exact in a double: such a file is copied.
    if (file === undefined || !Number.isSafeInteger(file.dev) || !Number.isSafeInteger(file.ino)) return undefined;
    const layer = this.layers.find((candidate) => file.hostPath.startsWith(`${candidate.dir}/`));
    return layer && { hostPath: file.hostPath, inode: `${file.dev}:${file.ino}`, inodesOf: [layer.id, ...layer.linkedFrom] };
  }

  /** Absolute paths a pattern names: symlinks in parent components resolved inside the root, wildcards per component. */
  private async expand(pattern: string): Promise<string[]> {
    const clean = posix.normalize(`/${pattern}`);
    if (!hasMeta(clean)) {
      const parent = await this.fs.resolve(posix.dirname(clean), { followFinal: true });
      const path = posix.join(parent, posix.basename(clean));
      return (await this.fs.lstat(path)) ? [path] : [];
    }
    let candidates = ["/"];
    for (const component of clean.split("/").filter(Boolean)) {
      const next: string[] = [];
      for (const base of candidates) {
        const dir = await this.fs.resolve(base, { followFinal: true });
        if (!hasMeta(component)) {
          if (await this.fs.lstat(posix.join(dir, component))) next.push(posix.join(dir, component));
          continue;
        }
        const stat = await this.fs.lstat(dir);
        if (stat?.type !== "dir") continue;
        for (const name of await this.fs.readdir(dir)) if (matchPath(component, name)) next.push(posix.join(dir, name));
      }
      candidates = next;
    }
    return candidates;
  }

  private async entry(path: string, relative: string): Promise<TreeEntry | undefined> {
    const stat = await this.fs.lstat(path);
    if (!stat || (stat.type !== "file" && stat.type !== "dir" && stat.type !== "symlink")) return undefined;
    const entry: TreeEntry = { path: relative, type: stat.type, mode: stat.mode, uid: stat.uid, gid: stat.gid, mtimeMs: stat.mtimeMs, size: stat.size };
    if (stat.type === "symlink") entry.linkTarget = stat.linkTarget ?? (await this.fs.readlink(path));
    if (stat.type === "file") {
      const hostPath = await this.fs.hostPath(path);
      if (hostPath) entry.hostPath = hostPath;
    }
    return entry;
  }

  private async walk(dir: string, relative: string, exclude: IgnoreMatcher | undefined): Promise<TreeEntry[]> {
    const entries: TreeEntry[] = [];
    for (const name of await this.fs.readdir(dir)) {
      const childRelative = relative === "" ? name : `${relative}/${name}`;
      if (exclude?.excludes(childRelative)) continue;
      const entry = await this.entry(posix.join(dir, name), childRelative);
      if (!entry) continue;
      entries.push(entry);
      if (entry.type === "dir") entries.push(...(await this.walk(posix.join(dir, name), childRelative, exclude)));
    }
    return entries;
  }
}

/** The entries below a host directory, parents before children, --exclude applied. */
async function walkDirectory(dir: string, relative: string, exclude: IgnoreMatcher | undefined): Promise<TreeEntry[]> {
  const entries: TreeEntry[] = [];
  const names = (await readdir(dir)).sort();
  const stats = await Promise.all(names.map((name) => lstat(join(dir, name))));
  for (const [index, name] of names.entries()) {
    const childRelative = relative === "" ? name : `${relative}/${name}`;
    if (exclude?.excludes(childRelative)) continue;
    const stat = stats[index] as Stats;
    const type = stat.isDirectory() ? "dir" : stat.isFile() ? "file" : stat.isSymbolicLink() ? "symlink" : undefined;
    if (!type) continue;
    const host = join(dir, name);
    const entry: TreeEntry = { path: childRelative, type, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, mtimeMs: stat.mtimeMs, size: stat.size };
    if (type === "symlink") entry.linkTarget = await readlink(host);
    if (type === "file") entry.hostPath = host;
    entries.push(entry);
    if (type === "dir") entries.push(...(await walkDirectory(host, childRelative, exclude)));
  }
  return entries;
}
