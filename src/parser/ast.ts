import type { Span } from "./span.ts";
import type { EscapeChar } from "./words.ts";

/** The parse tree of a Dockerfile, as `tsbuild parse --format json` prints it (schema: docs/parse-ast.md). */
export interface Dockerfile {
  file: string;
  /** The escape character in force (`\` unless a `# escape=` directive changed it). */
  escape: EscapeChar;
  directives: Directive[];
  instructions: Instruction[];
  /** Build stages: each starts at a FROM; ARGs before the first FROM belong to none. */
  stages: Stage[];
  warnings: Warning[];
}

export type DirectiveName = "syntax" | "escape" | "check";

export interface Directive {
  name: DirectiveName;
  value: string;
  span: Span;
}

export const KEYWORDS = [
  "add",
  "arg",
  "cmd",
  "copy",
  "entrypoint",
  "env",
  "expose",
  "from",
  "healthcheck",
  "label",
  "maintainer",
  "onbuild",
  "run",
  "shell",
  "stopsignal",
  "user",
  "volume",
  "workdir",
] as const;

export type Keyword = (typeof KEYWORDS)[number];

export interface Flag {
  /** The name without the leading `--`, lower case as Docker requires. */
  name: string;
  /** The value after `=`, quotes and escapes removed; undefined when written without `=`. */
  value: string | undefined;
  /** The flag exactly as written, e.g. `--chown="app:app"`. */
  raw: string;
  span: Span;
}

/** A key/value argument of ENV, LABEL or ARG, as written (quotes kept). */
export interface KeyValue {
  key: string;
  /** Undefined only for `ARG name` without a default. */
  value: string | undefined;
  span: Span;
}

export interface Heredoc {
  /** The delimiter word with quotes removed, e.g. `EOF` for `<<"EOF"`. */
  name: string;
  /** The body exactly as in the file, line endings included, terminator excluded. */
  content: string;
  /** False when any part of the delimiter was quoted: the body is then taken literally. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from the body and the terminator. */
  chomp: boolean;
  /** The file descriptor written before `<<`, e.g. 3 for `3<<EOF`; 0 when none. */
  fd: number;
  span: Span;
}

export interface Instruction {
  keyword: Keyword;
  flags: Flag[];
  /**
   * The arguments as written, split the way the instruction splits them:
   * the array elements for JSON form, the whole command for shell form,
   * whitespace-separated words for FROM/EXPOSE/COPY/ADD/VOLUME.
   * Empty for ENV, LABEL and ARG, whose arguments are in `pairs`.
   */
  args: string[];
  /** ENV, LABEL and ARG: the key/value pairs as written. */
  pairs?: KeyValue[];
  /** Written in JSON (exec) form. */
  json: boolean;
  heredocs: Heredoc[];
  /** ONBUILD: the instruction it wraps. */
  trigger?: Instruction;
  /** The whole instruction in the file, from its keyword to the end of its last line (heredocs included). */
  span: Span;
  /** The instruction's logical line: continuation lines joined, comment lines dropped. */
  source: string;
  /** Comment lines directly above the instruction, without `#`. */
  comments: string[];
}

export interface Stage {
  /** The stage name after `AS`, lower case; undefined when unnamed. */
  name: string | undefined;
  /** The base image or stage reference as written (not yet expanded). */
  base: string;
  /** The `--platform` flag as written, if any. */
  platform: string | undefined;
  /** Index in `instructions` of this stage's FROM. */
  from: number;
  /** Index in `instructions` one past this stage's last instruction. */
  end: number;
}

export interface Warning {
  code: string;
  message: string;
  span: Span;
}
