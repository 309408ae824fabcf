/**
 * The build graph: plain-data operations whose digest covers their content
 * and their inputs' digests, so the same Dockerfile and inputs give the same
 * graph on any machine. Descriptions and source locations are metadata kept
 * beside the op: they never change a digest.
 */

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
}

/** A filesystem from outside the graph. */
export interface SourceOp {
  type: "source";
  /**
   * `local://context` (the build context), `local://<name>` (a named context
   * directory), `docker-image://<ref>`, `oci-layout://<path>@<digest>`, `https://…` (ADD of a URL),
   * `git://…` (ADD of a repository).
   */
  identifier: string;
  /** Identifier-specific settings, e.g. the include patterns of a local context. */
  attrs?: Record<string, string>;
  platform?: Platform;
}

export interface ChownSpec {
  /** A user name or numeric id, resolved against the destination's /etc/passwd when the op runs. */
  user: string;
  /** A group name or numeric id; absent = the user's primary group (or 0 for a numeric user). */
  group?: string;
}

export interface CopyAction {
  action: "copy";
  /** Index into the op's inputs of the filesystem the sources come from. */
  sourceInput: number;
  /** Source patterns (expanded), relative to the source root. */
  sources: string[];
  /** Absolute destination; a trailing `/` means "into this directory". */
  dest: string;
  chown?: ChownSpec;
  /** Octal (e.g. "0755") or symbolic mode for everything copied. */
  chmod?: string;
  /** `--exclude` patterns. */
  excludes?: string[];
  /** `--parents`: keep the sources' parent directories under dest. */
  parents?: boolean;
  /** ADD: unpack local tar archives into dest. */
  unpackArchives?: boolean;
}

export interface MkdirAction {
  action: "mkdir";
  path: string;
  mode: number;
  makeParents: boolean;
  chown?: ChownSpec;
}

export interface MkfileAction {
  action: "mkfile";
  path: string;
  mode: number;
  data: string;
  chown?: ChownSpec;
}

export type FileAction = CopyAction | MkdirAction | MkfileAction;

/** Changes files on top of input 0 (absent input = scratch). */
export interface FileOp {
  type: "file";
  actions: FileAction[];
}

export interface ExecMount {
  type: "bind" | "cache" | "tmpfs" | "secret" | "ssh";
  target: string;
  /** Index into the op's inputs for bind/cache `from`; absent = the context (bind) or empty (cache). */
  input?: number;
  source?: string;
  readonly?: boolean;
  /** cache: id and sharing; secret/ssh: id. */
  id?: string;
  sharing?: "shared" | "private" | "locked";
  mode?: number;
  uid?: number;
  gid?: number;
  required?: boolean;
  /** secret: also expose the value as this environment variable. */
  env?: string;
  /** tmpfs: size limit in bytes. */
  size?: number;
}

/** A process run on top of input 0 (RUN). */
export interface ExecOp {
  type: "exec";
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  network: "default" | "none" | "host";
  security: "sandbox" | "insecure";
  mounts: ExecMount[];
  /** Host devices made available (RUN --device; needs --allow device). */
  devices?: string[];
  /** Files written before the command runs: heredoc scripts with a shebang (RUN <<EOF). */
  files?: { path: string; data: string; mode: number }[];
  platform: Platform;
}

/** Stacks its inputs' filesystems, later over earlier (COPY --link). */
export interface MergeOp {
  type: "merge";
}

export type Op = SourceOp | FileOp | ExecOp | MergeOp;

export interface Vertex {
  digest: string;
  op: Op;
  /** Digests of the input vertices; `null` stands for scratch (an empty filesystem). */
  inputs: (string | null)[];
  /** For progress and history, e.g. "[build 2/4] COPY src/ /app/". */
  name: string;
  /** Where in the Dockerfile the vertex comes from. */
  location?: { file: string; line: number };
  /** Ignore cached results for this vertex (--no-cache-filter). */
  ignoreCache?: boolean;
}
