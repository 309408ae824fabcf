/**
 * The local build context: a directory on the host, seen through its
 * `.dockerignore`, from which COPY and ADD select sources.
 *
 * Semantics follow BuildKit: the context is the directory as fsutil would
 * transfer it (ignored paths do not exist, an ignored directory exists only
 * when an exception re-includes something below it), sources are resolved
 * like fsutil's copy (rootPath / ResolveWildcards): symlinks are resolved
 * inside the context root, wildcards are filepath.Match patterns matched by
 * walking below the first element that has one, and `--exclude` patterns
 * apply to the paths below each matched source.
 *
 * Cache keys: {@link LocalContext.checksum} hashes only what a selection
 * holds (names, type, mode, owner, symlink targets, content), never mtimes.
 * File contents are hashed once and remembered in a {@link ChecksumCache}.
 */
import { createHash } from "node:crypto";
import type { Hash } from "node:crypto";
import { lstatSync, readdirSync, readlinkSync, realpathSync, statSync } from "node:fs";
import type { BigIntStats, Dirent } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { BadPatternError, DockerignoreError, findDockerignore, IgnoreMatcher, matchPath, parseDockerignore, type IgnoreRule } from "../parser/index.ts";
import { ChecksumCache, fileIdentity, isCacheable } from "./checksum-cache.ts";
import type { FileIdentity } from "./checksum-cache.ts";
import { ContextError, errnoCode, isNotFound } from "./errors.ts";
import { hashFile } from "./hash.ts";
import type { FileHash } from "./hash.ts";
import { cleanSource, goClean, joinRel, maxMatchDepth, splitWildcards } from "./paths.ts";
import { Yielder } from "./yielder.ts";

export type ContextFileType = "file" | "dir" | "symlink";

export interface ContextFile {
  /** Relative to the selected source ('/'-separated); "." for the source itself. */
  path: string;
  type: ContextFileType;
  /** Permission bits plus setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Modification time (ms); copies keep it. Never part of a checksum. */
  mtimeMs: number;
  /** The symlink's target as stored (only for symlinks). */
  linkTarget?: string;
  /** Absolute host path. */
  hostPath: string;
}

export interface SelectedEntry {
  /**
   * The source as matched (context-relative, '/'-separated, no leading '/';
   * "." for the context root). A non-wildcard source is the cleaned pattern;
   * a wildcard match is the path found, below the resolved directory.
   */
  source: string;
  /** Absolute host path (of the symlink's target when it was followed). */
  hostPath: string;
  type: ContextFileType;
  /**
   * For a directory: its contents, recursively (a directory before what it
   * holds, names sorted), minus .dockerignore'd and --exclude'd paths, with
   * paths relative to the directory.
   */
  children?: ContextFile[];
  /** The source itself, with path ".". */
  stat: ContextFile;
}

export interface Selection {
  entries: SelectedEntry[];
}

export interface SelectOptions {
  /** COPY/ADD --exclude patterns, matched (with .dockerignore rules) against paths below each matched source. */
  excludes?: readonly string[];
  /** Follow a symlink that is the last element of a source (symlinks earlier in a path are always followed). */
  followLinks?: boolean;
  /** Return an empty selection instead of failing when the sources select nothing (BuildKit's AllowEmptyWildcard). */
  allowEmptyWildcard?: boolean;
  /** Names the instruction in error messages; default "COPY". */
  instruction?: string;
}

export interface ChecksumOptions {
  /** Leave mode bits out of the key (COPY --chmod sets them). */
  ignoreMode?: boolean;
  /** Leave uid/gid out of the key (COPY --chown sets them). */
  ignoreOwner?: boolean;
}

export interface LocalContextOptions {
  dir: string;
  /** The Dockerfile in use: `<Dockerfile>.dockerignore` beside it wins over `<dir>/.dockerignore`. */
  dockerfilePath: string;
  /** A file (under the state root) where content digests persist between builds; absent: memory only. */
  checksumCachePath?: string;
}

/** What the context read; tests use it to prove that warm builds read no file contents. */
export interface ContextCounters {
  /** Files whose content was read and hashed. */
  filesHashed: number;
  bytesHashed: number;
  /** Content digests served by the checksum cache. */
  cacheHits: number;
}

interface Resolved {
  /** Context-relative real path, "" for the root. */
  rel: string;
  host: string;
  stats: BigIntStats;
}

const MAX_SYMLINKS = 255;
const CHECKSUM_HEADER = "tsbuild/context-selection/v1\0";
/** Hash input is gathered into strings of about this size before hash.update. */
const HASH_BATCH = 64 * 1024;

export class LocalContext {
  /** The context directory, absolute with symlinks resolved. */
  readonly dir: string;
  readonly dockerfilePath: string;
  /** The ignore file in effect (`<Dockerfile>.dockerignore` or `<dir>/.dockerignore`), if any. */
  readonly ignoreFile: string | undefined;
  readonly counters: ContextCounters = { filesHashed: 0, bytesHashed: 0, cacheHits: 0 };

  private readonly ignore: IgnoreMatcher | undefined;
  private readonly cache: ChecksumCache;
  /** Host path -> identity seen by the last select(), used to look up the checksum cache. */
  private readonly identities = new Map<string, FileIdentity>();
  /** Digests computed by this process but too recent for the persistent cache (identity key, digest), so one build reads a file once. */
  private readonly recentDigests = new Map<string, { key: string; digest: string }>();
  private readonly descendMemo = new Map<string, boolean>();
  private readonly visibleBelowMemo = new Map<string, boolean>();

  private constructor(dir: string, dockerfilePath: string, ignoreFile: string | undefined, ignore: IgnoreMatcher | undefined, cache: ChecksumCache) {
    this.dir = dir;
    this.dockerfilePath = dockerfilePath;
    this.ignoreFile = ignoreFile;
    this.ignore = ignore;
    this.cache = cache;
  }

  static async open(options: LocalContextOptions): Promise<LocalContext> {
    const given = path.resolve(options.dir);
    let dir: string;
    try {
      dir = realpathSync(given);
    } catch (error) {
      if (isNotFound(error)) {
        throw new ContextError("CONTEXT_NOT_FOUND", `unable to prepare context: path ${JSON.stringify(options.dir)} not found`, {
          hint: "pass an existing directory as the build context",
          cause: error,
        });
      }
      throw error;
    }
    if (!statSync(dir).isDirectory()) {
      throw new ContextError("CONTEXT_NOT_FOUND", `unable to prepare context: ${JSON.stringify(options.dir)} is not a directory`, {
        hint: "the build context must be a directory",
      });
    }
    const ignoreFile = await findDockerignore(given, options.dockerfilePath);
    const ignore = ignoreFile === undefined ? undefined : await loadIgnoreFile(ignoreFile);
    const cache = new ChecksumCache(options.checksumCachePath);
    return new LocalContext(dir, path.resolve(options.dockerfilePath), ignoreFile, ignore, cache);
  }

  /** Is this context-relative path excluded by the ignore file (as written, cleaned; no symlinks resolved)? */
  isIgnored(relPath: string): boolean {
    if (this.ignore === undefined) return false;
    const { components } = cleanSource(relPath);
    return components.length > 0 && this.ignore.excludes(components.join("/"));
  }

  /**
   * Resolves COPY/ADD sources (after ARG expansion, relative to the context
   * root; a leading '/' means the root; wildcards are filepath.Match patterns
   * per path element) to the entries they select, honouring .dockerignore.
   *
   * Throws {@link ContextError}: a non-wildcard source that does not exist or
   * is ignored (SOURCE_NOT_FOUND), a source with `..` beyond the root
   * (SOURCE_OUTSIDE_CONTEXT), sources that select nothing at all
   * (NO_SOURCE_FILES, unless allowEmptyWildcard), a bad pattern (INVALID_PATTERN).
   */
  async select(patterns: readonly string[], options: SelectOptions = {}): Promise<Selection> {
    const instruction = options.instruction ?? "COPY";
    const followLinks = options.followLinks ?? false;
    const excludes = compileExcludes(options.excludes ?? [], instruction);
    const yielder = new Yielder();
    const entries: SelectedEntry[] = [];
    for (const pattern of patterns) {
      const { components, escapes } = cleanSource(pattern);
      if (escapes) throw this.outsideContext(pattern, instruction);
      const { base, pattern: wildcard } = splitWildcards(components);
      if (wildcard === undefined) {
        const resolved = this.resolve(components, followLinks);
        if (resolved === undefined) throw this.notFound(pattern, pattern, instruction);
        entries.push(await this.entryFor(components.join("/") || ".", resolved, excludes, instruction, yielder));
        continue;
      }
      validatePattern(wildcard, pattern, instruction);
      const dir = this.resolve(base, followLinks);
      if (dir === undefined) throw this.notFound(pattern, base.join("/") || ".", instruction);
      if (!dir.stats.isDirectory()) continue;
      const matches = await this.matchWildcard(dir.rel, wildcard, yielder);
      for (const match of matches) {
        const resolved = this.resolveMatch(match, followLinks);
        if (resolved === undefined) throw this.notFound(pattern, match, instruction);
        entries.push(await this.entryFor(match, resolved, excludes, instruction, yielder));
      }
    }
    if (entries.length === 0 && !options.allowEmptyWildcard) {
      throw new ContextError("NO_SOURCE_FILES", `${instruction} failed: no source files were specified`, {
        hint: `nothing in the build context ${this.dir} matches ${patterns.map((p) => JSON.stringify(p)).join(", ") || "(no sources)"}${this.ignoreHint()}`,
      });
    }
    return { entries };
  }

  /**
   * A stable "sha256:<hex>" over the selection: each entry's source, then for
   * the entry and every child its path relative to the entry, type, mode,
   * uid, gid, symlink target and content digest. Independent of mtimes and of
   * files outside the selection. Reflects the files as select() saw them
   * (select again after changing files).
   */
  async checksum(selection: Selection, options: ChecksumOptions = {}): Promise<string> {
    const yielder = new Yielder();
    const writer = new HashWriter(createHash("sha256"));
    writer.add(CHECKSUM_HEADER);
    for (const entry of selection.entries) {
      const children = entry.children ?? [];
      writer.add(`entry\0${entry.source}\0${children.length}\0`);
      await this.addRecord(writer, ".", entry.stat, options, yielder);
      for (const child of children) await this.addRecord(writer, child.path, child, options, yielder);
    }
    return `sha256:${writer.digest()}`;
  }

  /**
   * A selected file's content sha256 (hex) as `checksum` saw it: from memory or the
   * checksum cache when its identity is unchanged, else read once.
   */
  fileDigest(file: ContextFile): Promise<string> {
    return this.contentDigest(file, new Yielder());
  }

  /** Saves the checksum cache (atomically: temp file + rename). */
  async close(): Promise<void> {
    await this.cache.save();
  }

  // -------------------------------------------------------------------------
  // Resolution
  // -------------------------------------------------------------------------

  /**
   * fsutil's rootPath: walks the elements, following every symlink met on the
   * way (and the last one when `followFinal`) with the context as root: an
   * absolute target starts again at the context root, ".." stops there.
   * Undefined when the path is missing or not visible through .dockerignore.
   */
  private resolve(components: readonly string[], followFinal: boolean): Resolved | undefined {
    const pending = [...components].reverse();
    const resolved: string[] = [];
    let stats: BigIntStats | undefined;
    let links = 0;
    while (pending.length > 0) {
      const element = pending.pop()!;
      if (element === "..") {
        resolved.pop();
        stats = undefined;
        continue;
      }
      resolved.push(element);
      const rel = resolved.join("/");
      const current = this.lstat(this.hostOf(rel));
      if (current === undefined) return undefined;
      const isLast = pending.length === 0;
      if (current.isSymbolicLink() && (!isLast || followFinal)) {
        if (!this.isVisible(rel, false)) return undefined;
        if (++links > MAX_SYMLINKS) {
          throw new ContextError("TOO_MANY_SYMLINKS", `too many levels of symbolic links resolving ${JSON.stringify(components.join("/"))} in the build context`);
        }
        const target = this.readlink(this.hostOf(rel));
        resolved.pop();
        if (target.startsWith("/")) resolved.length = 0;
        const parts = target.split("/").filter((part) => part !== "" && part !== ".");
        for (let i = parts.length - 1; i >= 0; i--) pending.push(parts[i]!);
        stats = undefined;
        continue;
      }
      if (!isLast && !current.isDirectory()) return undefined;
      stats = current;
    }
    const rel = resolved.join("/");
    const host = this.hostOf(rel);
    stats ??= this.lstat(host);
    if (stats === undefined || !this.isVisible(rel, stats.isDirectory())) return undefined;
    return { rel, host, stats };
  }

  /** A wildcard match is a real path already seen by the walk; only a final symlink may need following. */
  private resolveMatch(rel: string, followLinks: boolean): Resolved | undefined {
    const host = this.hostOf(rel);
    const stats = this.lstat(host);
    if (stats === undefined) return undefined;
    if (followLinks && stats.isSymbolicLink()) return this.resolve(rel.split("/"), true);
    return { rel, host, stats };
  }

  /**
   * fsutil's resolveWildcards over the visible tree: walks below `baseRel` in
   * name order, collects paths (relative to the context) whose path below
   * the base matches `pattern`, and does not descend into a match.
   */
  private async matchWildcard(baseRel: string, pattern: string, yielder: Yielder): Promise<string[]> {
    const maxDepth = maxMatchDepth(pattern);
    const matches: string[] = [];
    const visit = async (dirRel: string, belowBase: string, depth: number): Promise<void> => {
      for (const dirent of this.readdir(this.hostOf(dirRel))) {
        const pause = yielder.tick();
        if (pause !== undefined) await pause;
        const isDir = dirent.isDirectory();
        if (!isDir && !dirent.isFile() && !dirent.isSymbolicLink()) continue;
        const rel = joinRel(dirRel, dirent.name);
        if (!this.isVisibleInParent(rel, isDir)) continue;
        const candidate = joinRel(belowBase, dirent.name);
        if (matchPath(pattern, candidate)) matches.push(rel);
        else if (isDir && depth < maxDepth) await visit(rel, candidate, depth + 1);
      }
    };
    await visit(baseRel, "", 1);
    return matches;
  }

  // -------------------------------------------------------------------------
  // Visibility through .dockerignore (the tree fsutil would transfer)
  // -------------------------------------------------------------------------

  /** Does `rel` exist in the transferred context? Checks every parent's pruning, then the path. */
  private isVisible(rel: string, isDir: boolean): boolean {
    if (this.ignore === undefined || rel === "") return true;
    for (let slash = rel.indexOf("/"); slash >= 0; slash = rel.indexOf("/", slash + 1)) {
      if (!this.canDescend(rel.slice(0, slash))) return false;
    }
    return this.isVisibleInParent(rel, isDir);
  }

  /** Visibility of a path whose parent directory is known to be walked. */
  private isVisibleInParent(rel: string, isDir: boolean): boolean {
    const ignore = this.ignore;
    if (ignore === undefined || !ignore.excludes(rel)) return true;
    // An ignored directory is still sent when an exception re-includes something below it.
    return isDir && ignore.mayReincludeBelow(rel) && this.hasVisibleDescendant(rel);
  }

  /** fsutil walks into a directory unless it is ignored and no exception can reach below it. */
  private canDescend(dirRel: string): boolean {
    let known = this.descendMemo.get(dirRel);
    if (known === undefined) {
      known = !this.ignore!.excludes(dirRel) || this.ignore!.mayReincludeBelow(dirRel);
      this.descendMemo.set(dirRel, known);
    }
    return known;
  }

  private hasVisibleDescendant(dirRel: string): boolean {
    let known = this.visibleBelowMemo.get(dirRel);
    if (known !== undefined) return known;
    known = false;
    for (const dirent of this.readdir(this.hostOf(dirRel))) {
      const isDir = dirent.isDirectory();
      if (!isDir && !dirent.isFile() && !dirent.isSymbolicLink()) continue;
      if (this.isVisibleInParent(joinRel(dirRel, dirent.name), isDir)) {
        known = true;
        break;
      }
    }
    this.visibleBelowMemo.set(dirRel, known);
    return known;
  }

  // -------------------------------------------------------------------------
  // Entries and directory walks
  // -------------------------------------------------------------------------

  private async entryFor(
    source: string,
    resolved: Resolved,
    excludes: IgnoreMatcher | undefined,
    instruction: string,
    yielder: Yielder,
  ): Promise<SelectedEntry> {
    const type = fileType(resolved.stats);
    if (type === undefined) {
      throw new ContextError(
        "UNSUPPORTED_FILE_TYPE",
        `${instruction} failed: ${JSON.stringify(source)} is a ${specialKind(resolved.stats)}; only regular files, directories and symlinks can be copied`,
      );
    }
    const stat = this.toContextFile(".", resolved.host, resolved.stats, type);
    const entry: SelectedEntry = { source, hostPath: resolved.host, type, stat };
    if (type === "dir") {
      const children: ContextFile[] = [];
      await this.walk(resolved.rel, "", excludes, children, yielder);
      entry.children = children;
    }
    return entry;
  }

  /**
   * Appends the visible contents of `dirRel` (context-relative) to `out`,
   * with paths relative to the selected directory (`prefix` is this
   * directory's). Ignored files are never stat'ed nor read; FIFOs, sockets
   * and devices are left out.
   */
  private async walk(dirRel: string, prefix: string, excludes: IgnoreMatcher | undefined, out: ContextFile[], yielder: Yielder): Promise<void> {
    const dirHost = this.hostOf(dirRel);
    for (const dirent of this.readdir(dirHost)) {
      const pause = yielder.tick();
      if (pause !== undefined) await pause;
      const name = dirent.name;
      const rel = joinRel(dirRel, name);
      const below = joinRel(prefix, name);
      const maybeDir = dirent.isDirectory();
      let onlyIfNotEmpty = false;
      if (this.ignore?.excludes(rel)) {
        if (!maybeDir || !this.ignore.mayReincludeBelow(rel)) continue;
        onlyIfNotEmpty = true;
      }
      if (excludes?.excludes(below)) {
        if (!maybeDir || !excludes.mayReincludeBelow(below)) continue;
        onlyIfNotEmpty = true;
      }
      if (!maybeDir && !dirent.isFile() && !dirent.isSymbolicLink()) continue;
      const host = path.join(dirHost, name);
      const stats = this.lstat(host);
      if (stats === undefined) continue; // removed meanwhile
      const type = fileType(stats);
      if (type === undefined) continue;
      if (type !== "dir") {
        if (!onlyIfNotEmpty) out.push(this.toContextFile(below, host, stats, type));
        continue;
      }
      const record = this.toContextFile(below, host, stats, type);
      if (!onlyIfNotEmpty) {
        out.push(record);
        await this.walk(rel, below, excludes, out, yielder);
        continue;
      }
      const kept: ContextFile[] = [];
      await this.walk(rel, below, excludes, kept, yielder);
      if (kept.length === 0) continue;
      out.push(record);
      for (const file of kept) out.push(file);
    }
  }

  private toContextFile(relPath: string, hostPath: string, stats: BigIntStats, type: ContextFileType): ContextFile {
    const file: ContextFile = {
      path: relPath,
      type,
      mode: Number(stats.mode & 0o7777n),
      uid: Number(stats.uid),
      gid: Number(stats.gid),
      size: Number(stats.size),
      mtimeMs: Number(stats.mtimeMs),
      hostPath,
    };
    if (type === "symlink") file.linkTarget = this.readlink(hostPath);
    else if (type === "file") this.identities.set(hostPath, fileIdentity(stats));
    return file;
  }

  // -------------------------------------------------------------------------
  // Checksums
  // -------------------------------------------------------------------------

  private async addRecord(writer: HashWriter, relPath: string, file: ContextFile, options: ChecksumOptions, yielder: Yielder): Promise<void> {
    let content = "";
    if (file.type === "file") content = await this.contentDigest(file, yielder);
    else if (file.type === "symlink") content = file.linkTarget ?? "";
    const mode = options.ignoreMode ? "" : file.mode.toString(8);
    const uid = options.ignoreOwner ? "" : String(file.uid);
    const gid = options.ignoreOwner ? "" : String(file.gid);
    writer.add(`${relPath}\0${file.type}\0${mode}\0${uid}\0${gid}\0${content}\0`);
  }

  /** The file's sha256 (hex): from the cache when its identity is unchanged, else read once and remembered. */
  private async contentDigest(file: ContextFile, yielder: Yielder): Promise<string> {
    let identity = this.identities.get(file.hostPath);
    if (identity === undefined) {
      const stats = this.lstat(file.hostPath);
      if (stats === undefined || !stats.isFile()) throw this.readFailed(file.hostPath, "it was removed or replaced");
      identity = fileIdentity(stats);
      this.identities.set(file.hostPath, identity);
    }
    const cached = this.cache.get(file.hostPath, identity) ?? this.recentDigest(file.hostPath, identity);
    if (cached !== undefined) {
      this.counters.cacheHits++;
      const pause = yielder.tick();
      if (pause !== undefined) await pause;
      return cached;
    }
    const started = Date.now();
    let hashed: FileHash;
    try {
      hashed = await hashFile(file.hostPath, file.size);
    } catch (error) {
      throw this.readFailed(file.hostPath, describeError(error), error);
    }
    this.counters.filesHashed++;
    this.counters.bytesHashed += hashed.bytes;
    // Remember the digest only if the file did not change while it was read and
    // is old enough that a later change must move its ctime.
    if (fileIdentity(hashed.stats).key === identity.key) {
      if (isCacheable(identity.ctimeNs, started)) this.cache.set(file.hostPath, identity, hashed.digest);
      else this.recentDigests.set(file.hostPath, { key: identity.key, digest: hashed.digest });
    }
    const pause = yielder.tick();
    if (pause !== undefined) await pause;
    return hashed.digest;
  }

  private recentDigest(hostPath: string, identity: FileIdentity): string | undefined {
    const recent = this.recentDigests.get(hostPath);
    return recent?.key === identity.key ? recent.digest : undefined;
  }

  // -------------------------------------------------------------------------
  // Small helpers
  // -------------------------------------------------------------------------

  private hostOf(rel: string): string {
    return rel === "" ? this.dir : path.join(this.dir, rel);
  }

  private lstat(host: string): BigIntStats | undefined {
    try {
      return lstatSync(host, { bigint: true });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.readFailed(host, describeError(error), error);
    }
  }

  private readlink(host: string): string {
    try {
      return readlinkSync(host);
    } catch (error) {
      throw this.readFailed(host, describeError(error), error);
    }
  }

  /** Directory entries sorted by name (missing directory: none). */
  private readdir(host: string): Dirent[] {
    let dirents: Dirent[];
    try {
      dirents = readdirSync(host, { withFileTypes: true });
    } catch (error) {
      if (isNotFound(error)) return [];
      throw this.readFailed(host, describeError(error), error);
    }
    return dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private ignoreHint(): string {
    return this.ignoreFile === undefined ? "" : ` (after ${this.ignoreFile})`;
  }

  private notFound(pattern: string, shown: string, instruction: string): ContextError {
    return new ContextError(
      "SOURCE_NOT_FOUND",
      `${instruction} failed: file not found in build context or excluded by .dockerignore: stat ${shown}: file does not exist`,
      {
        hint:
          `sources are relative to the build context ${this.dir}; check ${JSON.stringify(pattern)}` +
          (this.ignoreFile === undefined ? "" : ` and the patterns in ${this.ignoreFile}`),
      },
    );
  }

  private outsideContext(pattern: string, instruction: string): ContextError {
    return new ContextError("SOURCE_OUTSIDE_CONTEXT", `${instruction} failed: forbidden path outside the build context: ${pattern}`, {
      hint: `sources must be inside the build context ${this.dir}; move the file into it or pick a larger context`,
    });
  }

  private readFailed(host: string, why: string, cause?: unknown): ContextError {
    return new ContextError("READ_FAILED", `cannot read ${host} in the build context: ${why}`, { cause });
  }
}

/** Collects hash input into large strings: far fewer hash.update calls for many small records. */
class HashWriter {
  private pending = "";
  constructor(private readonly hash: Hash) {}

  add(text: string): void {
    this.pending += text;
    if (this.pending.length >= HASH_BATCH) {
      this.hash.update(this.pending, "utf8");
      this.pending = "";
    }
  }

  digest(): string {
    if (this.pending !== "") this.hash.update(this.pending, "utf8");
    this.pending = "";
    return this.hash.digest("hex");
  }
}

async function loadIgnoreFile(file: string): Promise<IgnoreMatcher | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ContextError("INVALID_DOCKERIGNORE", `cannot read ${file}: ${describeError(error)}`, { cause: error });
  }
  let rules: IgnoreRule[];
  try {
    rules = parseDockerignore(text, file);
  } catch (error) {
    if (error instanceof DockerignoreError) {
      throw new ContextError("INVALID_DOCKERIGNORE", error.message, { hint: `fix or remove that line of ${file}`, cause: error });
    }
    throw error;
  }
  return rules.length === 0 ? undefined : new IgnoreMatcher(rules, file);
}

/**
 * COPY --exclude patterns as patternmatcher.New reads them (trimmed, cleaned,
 * '!' for exceptions), matched like .dockerignore rules.
 */
function compileExcludes(patterns: readonly string[], instruction: string): IgnoreMatcher | undefined {
  const rules: IgnoreRule[] = [];
  patterns.forEach((raw, index) => {
    const trimmed = raw.trim();
    if (trimmed === "") return;
    const cleaned = goClean(trimmed);
    const exclusion = cleaned.startsWith("!");
    const pattern = exclusion ? cleaned.slice(1) : cleaned;
    if (exclusion && pattern === "") {
      throw new ContextError("INVALID_PATTERN", `${instruction} failed: illegal --exclude pattern: "!"`);
    }
    rules.push({ pattern, exclusion, line: index + 1 });
  });
  if (rules.length === 0) return undefined;
  try {
    return new IgnoreMatcher(rules, "--exclude");
  } catch (error) {
    if (error instanceof DockerignoreError) {
      const bad = patterns[error.line - 1] ?? "";
      throw new ContextError("INVALID_PATTERN", `${instruction} failed: invalid --exclude pattern ${JSON.stringify(bad)}: syntax error in pattern`, {
        hint: "--exclude takes filepath.Match patterns (with ** for any number of directories)",
        cause: error,
      });
    }
    throw error;
  }
}

function validatePattern(wildcard: string, source: string, instruction: string): void {
  try {
    matchPath(wildcard, ".");
  } catch (error) {
    if (error instanceof BadPatternError) {
      throw new ContextError("INVALID_PATTERN", `${instruction} failed: invalid source pattern ${JSON.stringify(source)}: syntax error in pattern`, {
        hint: "wildcards are *, ? and [ranges] (filepath.Match); escape a literal one with a backslash",
        cause: error,
      });
    }
    throw error;
  }
}

function fileType(stats: BigIntStats): ContextFileType | undefined {
  if (stats.isFile()) return "file";
  if (stats.isDirectory()) return "dir";
  if (stats.isSymbolicLink()) return "symlink";
  return undefined;
}

function specialKind(stats: BigIntStats): string {
  if (stats.isFIFO()) return "named pipe";
  if (stats.isSocket()) return "socket";
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return "device";
  return "special file";
}

function describeError(error: unknown): string {
  const code = errnoCode(error);
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "ENOENT") return "it was removed";
  if (code === "ELOOP") return "it was replaced by a symlink";
  return error instanceof Error ? error.message : String(error);
}
