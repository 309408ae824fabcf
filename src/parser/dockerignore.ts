/**
 * `.dockerignore` support with Docker's exact semantics:
 *
 *  - reading follows moby/patternmatcher/ignorefile.ReadAll,
 *  - validation and matching follow moby/patternmatcher (New, Pattern.compile,
 *    MatchesOrParentMatches), including its quirks: patterns are turned into
 *    Go regular expressions, so e.g. `\d` matches a digit and `[[:alpha:]]`
 *    is a POSIX class, and `**foo` is a plain suffix test,
 *  - directory pruning follows BuildKit's fsutil walker,
 *  - `<Dockerfile>.dockerignore` beside the Dockerfile wins over
 *    `<context>/.dockerignore`, as in BuildKit.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { BadPatternError, matchPath } from "./glob.ts";

export interface IgnoreRule {
  /** The cleaned pattern, without the leading `!`. */
  pattern: string;
  /** A `!` rule: re-includes what earlier rules excluded. */
  exclusion: boolean;
  /** 1-based line in the ignore file. */
  line: number;
}

export class DockerignoreError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    problem: string,
  ) {
    super(`${file}:${line}: ${problem}`);
    this.name = "DockerignoreError";
  }
}

const DEFAULT_FILE_NAME = ".dockerignore";

// ---------------------------------------------------------------------------
// Reading (ignorefile.ReadAll)
// ---------------------------------------------------------------------------

/** bufio.Scanner refuses lines that do not fit its 64 KiB buffer together with the newline. */
const MAX_LINE_BYTES = 64 * 1024 - 1;
const BYTE_ORDER_MARK = "\uFEFF";
/** Go's unicode.IsSpace, which strings.TrimSpace uses; JS trim() differs (U+0085, U+FEFF). */
const GO_SPACE_AT_ENDS = /^\p{White_Space}+|\p{White_Space}+$/gu;

interface RawPattern {
  readonly text: string;
  readonly line: number;
}

/**
 * Parses an ignore file the way Docker does and validates every pattern.
 * Throws {@link DockerignoreError} naming `file` and the line of the first problem.
 */
export function parseDockerignore(text: string, file: string = DEFAULT_FILE_NAME): IgnoreRule[] {
  const rules = readPatterns(text, file).map((raw) => toRule(raw, file));
  for (const rule of rules) compileRule(rule, file); // reject what Docker would fail on at match time
  return rules;
}

/** ignorefile.ReadAll: comments, trimming, cleaning, leading '/' removal, '!' prefix kept. */
function readPatterns(text: string, file: string): RawPattern[] {
  const patterns: RawPattern[] = [];
  scannerLines(text).forEach((rawLine, index) => {
    const line = index + 1;
    if (byteLength(rawLine) > MAX_LINE_BYTES) {
      throw new DockerignoreError(file, line, `line is longer than ${MAX_LINE_BYTES} bytes`);
    }
    const withoutCr = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    const content = index === 0 && withoutCr.startsWith(BYTE_ORDER_MARK) ? withoutCr.slice(1) : withoutCr;
    const pattern = normalizeLine(content);
    if (pattern !== undefined) patterns.push({ text: pattern, line });
  });
  return patterns;
}

/** One line of ReadAll; undefined for comments and blank lines. */
function normalizeLine(content: string): string | undefined {
  // Only a '#' in the very first column starts a comment.
  if (content.startsWith("#")) return undefined;
  let pattern = trimGoSpace(content);
  if (pattern === "") return undefined;
  const invert = pattern.startsWith("!");
  if (invert) pattern = trimGoSpace(pattern.slice(1));
  if (pattern !== "") {
    pattern = cleanPath(pattern);
    // "/foo" means "foo" relative to the context; "/" alone stays.
    if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
  }
  return invert ? `!${pattern}` : pattern;
}

/** bufio.ScanLines: split on '\n', no token after a final newline ('\r' is handled by the caller). */
function scannerLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

function byteLength(line: string): number {
  // A UTF-16 unit needs at most 3 UTF-8 bytes, so short lines need no encoding.
  return line.length * 3 <= MAX_LINE_BYTES ? line.length : Buffer.byteLength(line, "utf8");
}

function trimGoSpace(text: string): string {
  return text.replace(GO_SPACE_AT_ENDS, "");
}

/** PatternMatcher.New for one pattern: Clean again, split off '!'. */
function toRule(raw: RawPattern, file: string): IgnoreRule {
  const cleaned = cleanPath(raw.text);
  if (!cleaned.startsWith("!")) return { pattern: cleaned, exclusion: false, line: raw.line };
  if (cleaned.length === 1) throw new DockerignoreError(file, raw.line, 'illegal exclusion pattern: "!"');
  return { pattern: cleaned.slice(1), exclusion: true, line: raw.line };
}

/** Go's path.Clean (filepath.Clean on Unix). */
function cleanPath(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const kept: string[] = [];
  for (const element of p.split("/")) {
    if (element === "" || element === ".") continue;
    if (element !== "..") {
      kept.push(element);
    } else if (kept.length > 0 && kept[kept.length - 1] !== "..") {
      kept.pop();
    } else if (!rooted) {
      kept.push(".."); // ".." cannot climb above a relative start, so it stays
    }
  }
  const joined = (rooted ? "/" : "") + kept.join("/");
  return joined === "" ? "." : joined;
}

// ---------------------------------------------------------------------------
// Pattern compilation (patternmatcher Pattern.compile)
// ---------------------------------------------------------------------------

export type PatternKind = "exact" | "prefix" | "suffix" | "regexp";

export interface CompiledPattern {
  readonly kind: PatternKind;
  /** The Go regular expression patternmatcher builds (only for kind "regexp"). */
  readonly goRegexp?: string;
  matches(path: string): boolean;
}

/** Characters that are regexp syntax but plain in filepath.Match, escaped by patternmatcher. */
const REGEXP_ONLY_SYNTAX = new Set([".", "+", "(", ")", "|", "{", "}", "$"]);

/**
 * Compiles a cleaned pattern (no `!`) the way patternmatcher does: plain
 * equality, prefix or suffix tests where possible, else a Go regexp that we
 * translate to an equivalent JavaScript RegExp.
 * @internal exported for tests.
 */
export function compileIgnorePattern(pattern: string): CompiledPattern {
  const { kind, goRegexp } = buildGoRegexp(pattern);
  switch (kind) {
    case "exact":
      return { kind, matches: (p) => p === pattern };
    case "prefix": {
      const prefix = pattern.slice(0, -2); // drop the trailing "**"
      return { kind, matches: (p) => p.startsWith(prefix) };
    }
    case "suffix": {
      const suffix = pattern.slice(2); // drop the leading "**"
      const bareSuffix = suffix.startsWith("/") ? suffix.slice(1) : undefined;
      // "**/foo" also matches "foo" itself.
      return { kind, matches: (p) => p.endsWith(suffix) || p === bareSuffix };
    }
    case "regexp": {
      const regexp = new RegExp(translateGoRegexp(goRegexp), "v");
      return { kind, goRegexp, matches: (p) => regexp.test(p) };
    }
  }
}

/** Pattern.compile's scan: the regexp text and the cheapest match kind that is equivalent. */
function buildGoRegexp(pattern: string): { kind: PatternKind; goRegexp: string } {
  const chars = Array.from(pattern);
  let goRegexp = "^";
  let kind: PatternKind = "exact";
  let pos = 0;
  for (let iteration = 0; pos < chars.length; iteration++) {
    const ch = chars[pos++]!;
    if (ch === "*" && chars[pos] === "*") {
      pos++;
      if (chars[pos] === "/") pos++; // "**/" behaves as "**"
      if (pos < chars.length) {
        goRegexp += "(.*/)?"; // any number of directories, even none
        kind = "regexp";
      } else if (kind === "exact") {
        kind = "prefix"; // trailing "**" after plain text: a prefix test
      } else {
        goRegexp += ".*";
        kind = "regexp";
      }
      // A leading "**" always becomes a suffix test, even "**foo" (matches "xfoo").
      if (iteration === 0) kind = "suffix";
    } else if (ch === "*") {
      goRegexp += "[^/]*";
      kind = "regexp";
    } else if (ch === "?") {
      goRegexp += "[^/]";
      kind = "regexp";
    } else if (REGEXP_ONLY_SYNTAX.has(ch)) {
      goRegexp += `\\${ch}`;
    } else if (ch === "\\") {
      // The escaped character goes to the regexp as is: "\d" becomes Go's \d.
      if (pos < chars.length) {
        goRegexp += `\\${chars[pos++]!}`;
        kind = "regexp";
      } else {
        goRegexp += "\\";
      }
    } else if (ch === "[" || ch === "]") {
      goRegexp += ch;
      kind = "regexp";
    } else {
      goRegexp += ch;
    }
  }
  return { kind, goRegexp: `${goRegexp}$` };
}

/** A rule ready to match: its compiled pattern plus the `!` flag. */
interface CompiledRule {
  readonly exclusion: boolean;
  readonly pattern: string;
  readonly compiled: CompiledPattern;
}

function compileRule(rule: IgnoreRule, file: string): CompiledRule {
  const pattern = cleanPath(rule.pattern);
  const invalid = (detail: string): DockerignoreError =>
    new DockerignoreError(file, rule.line, `invalid pattern ${JSON.stringify(pattern)}: ${detail}`);
  try {
    matchPath(pattern, "."); // New() validates with filepath.Match
  } catch (error) {
    if (error instanceof BadPatternError) throw invalid("syntax error in pattern");
    throw error;
  }
  try {
    return { exclusion: rule.exclusion, pattern, compiled: compileIgnorePattern(pattern) };
  } catch (error) {
    // Docker only hits this when matching; it then fails the build with ErrBadPattern.
    if (error instanceof GoRegexpError) throw invalid(`syntax error in pattern (as Go regexp: ${error.message})`);
    if (error instanceof SyntaxError) throw invalid(`syntax error in pattern (${error.message})`);
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Go regexp (RE2 syntax, Perl flags) to JavaScript RegExp with the 'v' flag
// ---------------------------------------------------------------------------

class GoRegexpError extends Error {}

type CodePointRange = readonly [number, number];

const MAX_RUNE = 0x10ffff;
const DIGITS: CodePointRange[] = [[0x30, 0x39]];
const WORD: CodePointRange[] = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];
const PERL_SPACE: CodePointRange[] = [[0x09, 0x0a], [0x0c, 0x0d], [0x20, 0x20]];

/** Go's \d \s \w (upper case: the complement): ASCII only, unlike JavaScript's \s. */
const PERL_CLASSES = new Map<string, readonly CodePointRange[]>([
  ["d", DIGITS],
  ["s", PERL_SPACE],
  ["w", WORD],
  ["D", complement(DIGITS)],
  ["S", complement(PERL_SPACE)],
  ["W", complement(WORD)],
]);

const POSIX_CLASSES = new Map<string, readonly CodePointRange[]>([
  ["alnum", [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]]],
  ["alpha", [[0x41, 0x5a], [0x61, 0x7a]]],
  ["ascii", [[0x00, 0x7f]]],
  ["blank", [[0x09, 0x09], [0x20, 0x20]]],
  ["cntrl", [[0x00, 0x1f], [0x7f, 0x7f]]],
  ["digit", DIGITS],
  ["graph", [[0x21, 0x7e]]],
  ["lower", [[0x61, 0x7a]]],
  ["print", [[0x20, 0x7e]]],
  ["punct", [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]]],
  ["space", [[0x09, 0x0d], [0x20, 0x20]]],
  ["upper", [[0x41, 0x5a]]],
  ["word", WORD],
  ["xdigit", [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]]],
]);

/** The one-letter names of Go's unicode.Categories other than "C". */
const ONE_LETTER_CATEGORIES = new Set(["L", "M", "N", "P", "S", "Z"]);
const GO_OTHER_CATEGORY = "\\p{Cc}\\p{Cf}\\p{Co}\\p{Cs}";

const C_ESCAPES = new Map([
  ["a", 0x07],
  ["f", 0x0c],
  ["n", 0x0a],
  ["r", 0x0d],
  ["t", 0x09],
  ["v", 0x0b],
]);

/** Go's \A \z \b \B; JS's \b under the 'v' flag (no 'i') is ASCII-based like Go's. */
const ASSERTION_ESCAPES = new Map([
  ["A", "^"],
  ["z", "$"],
  ["b", "\\b"],
  ["B", "\\B"],
]);

/** Translates the regexp text patternmatcher hands to Go's regexp.Compile. */
function translateGoRegexp(source: string): string {
  return new GoRegexpTranslator(source).translate();
}

/**
 * A translator for the RE2 syntax that patternmatcher can produce. Literals,
 * classes and ranges are emitted as \u{...} escapes so the output is valid
 * under the 'v' flag; Go's class semantics (union, negation) are preserved.
 */
class GoRegexpTranslator {
  private pos = 0;
  private out = "";
  private openGroups = 0;
  /** Whether the last item can take a repetition operator (Go: top of stack is not '(' or '|'). */
  private operandBefore = false;
  private lastWasRepeat = false;

  constructor(private readonly src: string) {}

  translate(): string {
    while (this.pos < this.src.length) {
      this.lastWasRepeat = this.translateItem();
    }
    if (this.openGroups > 0) throw new GoRegexpError("missing closing )");
    return this.out;
  }

  /** Translates one item; returns whether it was a repetition operator. */
  private translateItem(): boolean {
    const ch = this.src[this.pos]!;
    switch (ch) {
      case "(":
        this.pos++;
        this.openGroups++;
        this.emit("(?:", false);
        return false;
      case ")":
        if (this.openGroups === 0) throw new GoRegexpError("unexpected )");
        this.pos++;
        this.openGroups--;
        this.emit(")", true);
        return false;
      case "|":
        this.pos++;
        this.emit("|", false);
        return false;
      case "^":
      case "$":
        // Go allows repeating assertions; JS does so only inside a group.
        this.pos++;
        this.emit(`(?:${ch})`, true);
        return false;
      case ".":
        this.pos++;
        this.emit("[^\\n]", true); // Go's '.' excludes only '\n', JS's also '\r' and U+2028/9
        return false;
      case "[":
        this.emit(this.parseClass(), true);
        return false;
      case "*":
      case "+":
      case "?":
        this.translateRepeat(ch);
        return true;
      case "\\":
        this.translateEscape();
        return false;
      default:
        // '{' and '}' are always escaped by patternmatcher, so they are never repetitions here.
        this.emitLiteral(this.nextCodePoint());
        return false;
    }
  }

  private emit(fragment: string, isOperand: boolean): void {
    this.out += fragment;
    this.operandBefore = isOperand;
  }

  private emitLiteral(codePoint: number): void {
    this.emit(literalSource(codePoint), true);
  }

  private translateRepeat(op: string): void {
    if (this.lastWasRepeat) throw new GoRegexpError(`invalid nested repetition operator ${op}`);
    if (!this.operandBefore) throw new GoRegexpError(`missing argument to repetition operator ${op}`);
    this.pos++;
    let quantifier = op;
    if (this.src[this.pos] === "?") {
      this.pos++;
      quantifier += "?"; // non-greedy; irrelevant to whether it matches
    }
    this.out += quantifier;
  }

  /** An escape outside a class: assertions, \Q...\E, classes or a single character. */
  private translateEscape(): void {
    const assertion = ASSERTION_ESCAPES.get(this.src[this.pos + 1] ?? "");
    if (assertion !== undefined) {
      this.pos += 2;
      this.emit(`(?:${assertion})`, true);
      return;
    }
    switch (this.src[this.pos + 1]) {
      case "C":
        throw new GoRegexpError("invalid escape sequence \\C");
      case "Q":
        this.translateQuoted();
        return;
      case "p":
      case "P":
        this.emit(`[${this.parseUnicodeClass()}]`, true);
        return;
    }
    const perl = this.parsePerlClass();
    if (perl !== undefined) {
      this.emit(`[${perl}]`, true);
      return;
    }
    this.emitLiteral(this.parseEscape());
  }

  /** \Q...\E: everything up to \E (or the end, swallowing the final '$') is literal. */
  private translateQuoted(): void {
    const bodyStart = this.pos + 2;
    const end = this.src.indexOf("\\E", bodyStart);
    const body = end < 0 ? this.src.slice(bodyStart) : this.src.slice(bodyStart, end);
    this.pos = end < 0 ? this.src.length : end + 2;
    for (const ch of body) this.emitLiteral(ch.codePointAt(0)!);
  }

  /** Go's parseClass: ']' first is literal, '-' is fine anywhere, [:name:], \p, \d, escapes. */
  private parseClass(): string {
    this.pos++; // '['
    let negated = false;
    if (this.src[this.pos] === "^") {
      negated = true;
      this.pos++;
    }
    let body = "";
    let first = true;
    while (this.pos >= this.src.length || this.src[this.pos] !== "]" || first) {
      first = false;
      body += this.parseClassItem();
    }
    this.pos++; // ']'
    return `[${negated ? "^" : ""}${body}]`;
  }

  private parseClassItem(): string {
    const named = this.parseNamedClass();
    if (named !== undefined) return named;
    if (this.src[this.pos] === "\\" && (this.src[this.pos + 1] === "p" || this.src[this.pos + 1] === "P")) {
      return this.parseUnicodeClass();
    }
    const perl = this.parsePerlClass();
    if (perl !== undefined) return perl;
    const lo = this.parseClassChar();
    let hi = lo;
    // "[a-]" means 'a' or '-': a range needs something other than ']' after the dash.
    if (this.src[this.pos] === "-" && this.pos + 1 < this.src.length && this.src[this.pos + 1] !== "]") {
      this.pos++;
      hi = this.parseClassChar();
      if (hi < lo) throw new GoRegexpError("invalid character class range");
    }
    return rangeSource([lo, hi]);
  }

  private parseClassChar(): number {
    if (this.pos >= this.src.length) throw new GoRegexpError("missing closing ]");
    return this.src[this.pos] === "\\" ? this.parseEscape() : this.nextCodePoint();
  }

  /** [:alpha:] or [:^alpha:]; Go looks for the closing ":]" anywhere ahead. */
  private parseNamedClass(): string | undefined {
    if (!this.src.startsWith("[:", this.pos) || this.src.length - this.pos <= 2) return undefined;
    const close = this.src.indexOf(":]", this.pos + 2);
    if (close < 0) return undefined;
    const inner = this.src.slice(this.pos + 2, close);
    const negated = inner.startsWith("^");
    const ranges = POSIX_CLASSES.get(negated ? inner.slice(1) : inner);
    if (ranges === undefined) throw new GoRegexpError(`invalid character class range [:${inner}:]`);
    this.pos = close + 2;
    return rangesSource(negated ? complement(ranges) : ranges);
  }

  /** \d \D \s \S \w \W as class contents, or undefined. */
  private parsePerlClass(): string | undefined {
    if (this.src[this.pos] !== "\\") return undefined;
    const letter = this.src[this.pos + 1] ?? "";
    const ranges = PERL_CLASSES.get(letter);
    if (ranges === undefined) return undefined;
    this.pos += 2;
    return rangesSource(ranges);
  }

  /**
   * \pL or \PL as class contents. patternmatcher escapes '{', so the braced
   * form \p{Greek} reaches Go as \p\{Greek\}: a one-letter name "\" and an error.
   */
  private parseUnicodeClass(): string {
    const start = this.pos;
    const negated = this.src[this.pos + 1] === "P";
    this.pos += 2;
    const name = this.pos < this.src.length ? String.fromCodePoint(this.nextCodePoint()) : "";
    const fragment = unicodeCategorySource(name, negated);
    if (fragment === undefined) {
      throw new GoRegexpError(`invalid character class range ${this.src.slice(start, this.pos)}`);
    }
    return fragment;
  }

  /** Go's parseEscape: one escaped character (octal, hex, C escapes, escaped punctuation). */
  private parseEscape(): number {
    const start = this.pos;
    this.pos++; // '\'
    if (this.pos >= this.src.length) throw new GoRegexpError("trailing backslash at end of expression");
    const c = this.nextCodePoint();
    const invalid = (): GoRegexpError =>
      new GoRegexpError(`invalid escape sequence ${this.src.slice(start, this.pos)}`);
    if (c < 0x80 && !isAsciiAlphanumeric(c)) return c;
    const ch = String.fromCodePoint(c);
    if (ch >= "0" && ch <= "7") {
      // A lone \1-\7 would be a backreference, which Go does not support.
      if (ch !== "0" && !isOctalDigit(this.src[this.pos])) throw invalid();
      return this.readOctal(c - 0x30);
    }
    if (ch === "x") return this.readHexEscape(invalid);
    const cEscape = C_ESCAPES.get(ch);
    if (cEscape !== undefined) return cEscape;
    throw invalid();
  }

  /** Up to two more octal digits after the first. */
  private readOctal(value: number): number {
    for (let digits = 1; digits < 3 && isOctalDigit(this.src[this.pos]); digits++) {
      value = value * 8 + (this.src.charCodeAt(this.pos) - 0x30);
      this.pos++;
    }
    return value;
  }

  /** \xHH. (The \x{...} form cannot occur: patternmatcher escapes the '{'.) */
  private readHexEscape(invalid: () => GoRegexpError): number {
    const high = this.pos < this.src.length ? hexValue(this.nextCodePoint()) : -1;
    const low = this.pos < this.src.length ? hexValue(this.nextCodePoint()) : -1;
    if (high < 0 || low < 0) throw invalid();
    return high * 16 + low;
  }

  private nextCodePoint(): number {
    const codePoint = this.src.codePointAt(this.pos)!;
    this.pos += codePoint > 0xffff ? 2 : 1;
    return codePoint;
  }
}

/** A one-letter Go category as class contents; Go's C leaves out unassigned code points. */
function unicodeCategorySource(name: string, negated: boolean): string | undefined {
  if (name === "C") return negated ? `[^${GO_OTHER_CATEGORY}]` : GO_OTHER_CATEGORY;
  if (!ONE_LETTER_CATEGORIES.has(name)) return undefined;
  return `\\${negated ? "P" : "p"}{General_Category=${name}}`;
}

function complement(ranges: readonly CodePointRange[]): CodePointRange[] {
  const result: CodePointRange[] = [];
  let next = 0;
  for (const [lo, hi] of ranges) {
    if (lo > next) result.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_RUNE) result.push([next, MAX_RUNE]);
  return result;
}

function rangesSource(ranges: readonly CodePointRange[]): string {
  return ranges.map(rangeSource).join("");
}

function rangeSource([lo, hi]: CodePointRange): string {
  return lo === hi ? codePointSource(lo) : `${codePointSource(lo)}-${codePointSource(hi)}`;
}

function literalSource(codePoint: number): string {
  return isAsciiAlphanumeric(codePoint) ? String.fromCodePoint(codePoint) : codePointSource(codePoint);
}

function codePointSource(codePoint: number): string {
  return `\\u{${codePoint.toString(16)}}`;
}

function isAsciiAlphanumeric(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function isOctalDigit(ch: string | undefined): boolean {
  return ch !== undefined && ch >= "0" && ch <= "7";
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

// ---------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------

/** A path that path.Clean would change: empty, "." or ".." elements, "//", trailing '/'. */
const NEEDS_CLEANING = /^$|(?:^|\/)\.\.?(?:\/|$)|\/\/|\/$/;
/** Characters fsutil treats as wildcards when deciding whether an exception is a plain path. */
const WILDCARD_CHARS = /[*[\]?^\\]/;

export class IgnoreMatcher {
  private readonly rules: readonly CompiledRule[];
  private readonly hasExceptions: boolean;
  private readonly exceptionsArePlainPaths: boolean;
  /** Each exception's path with trailing "/**" or "/*" removed, plus '/'. */
  private readonly exceptionDirs: readonly string[];

  /** Compiles every rule once; `file` only names the source in errors for invalid hand-built rules. */
  constructor(rules: readonly IgnoreRule[], file: string = DEFAULT_FILE_NAME) {
    this.rules = rules.map((rule) => compileRule(rule, file));
    const exceptions = this.rules.filter((rule) => rule.exclusion).map((rule) => withoutTrailingGlob(rule.pattern));
    this.hasExceptions = exceptions.length > 0;
    this.exceptionsArePlainPaths = !exceptions.some((pattern) => WILDCARD_CHARS.test(pattern));
    this.exceptionDirs = exceptions.map((pattern) => `${pattern}/`);
  }

  /** Is this context-relative path ('/'-separated, no leading '/') excluded? Uses MatchesOrParentMatches semantics. */
  excludes(relPath: string): boolean {
    const file = NEEDS_CLEANING.test(relPath) ? cleanPath(relPath) : relPath;
    if (file === ".") return false; // the context root itself is never excluded
    let parents: readonly string[] | undefined;
    let excluded = false;
    for (const rule of this.rules) {
      // An inclusion cannot change an excluded path, nor an exception an included one.
      if (rule.exclusion !== excluded) continue;
      const { compiled } = rule;
      let matched = compiled.matches(file);
      if (!matched) {
        parents ??= parentDirectories(file);
        matched = parents.some((dir) => compiled.matches(dir));
      }
      if (matched) excluded = !rule.exclusion;
    }
    return excluded;
  }

  /**
   * True when some exclusion ('!') rule could re-include something below this
   * excluded directory, so a walker must still descend (BuildKit's fsutil rule:
   * with only plain-path exceptions, descend only into their ancestors; with
   * any wildcard exception, always descend).
   */
  mayReincludeBelow(relDir: string): boolean {
    if (!this.hasExceptions) return false;
    if (!this.exceptionsArePlainPaths) return true;
    const dirSlash = `${cleanPath(relDir)}/`;
    return this.exceptionDirs.some((dir) => dir.startsWith(dirSlash));
  }
}

/** fsutil's patternWithoutTrailingGlob. */
function withoutTrailingGlob(pattern: string): string {
  let trimmed = pattern;
  if (trimmed.endsWith("/**")) trimmed = trimmed.slice(0, -3);
  if (trimmed.endsWith("/*")) trimmed = trimmed.slice(0, -2);
  return trimmed;
}

/** "a/b/c" -> ["a", "a/b"]: the prefixes MatchesOrParentMatches also tries. */
function parentDirectories(file: string): string[] {
  const lastSlash = file.lastIndexOf("/");
  if (lastSlash < 0) return [];
  const parent = lastSlash === 0 ? "/" : file.slice(0, lastSlash); // filepath.Dir of a clean path
  const dirs: string[] = [];
  let prefix = "";
  parent.split("/").forEach((element, index) => {
    prefix = index === 0 ? element : `${prefix}/${element}`;
    dirs.push(prefix);
  });
  return dirs;
}

// ---------------------------------------------------------------------------
// Locating and loading
// ---------------------------------------------------------------------------

/**
 * Which ignore file applies: `<dockerfile>.dockerignore` beside the Dockerfile first,
 * else `<context>/.dockerignore`, else none. Returns the path or undefined.
 * Relative paths are resolved against the current working directory.
 */
export async function findDockerignore(contextDir: string, dockerfilePath: string): Promise<string | undefined> {
  const candidates = [
    `${path.resolve(dockerfilePath)}.dockerignore`,
    path.join(path.resolve(contextDir), DEFAULT_FILE_NAME),
  ];
  for (const candidate of candidates) {
    if (await isFile(candidate)) return candidate;
  }
  return undefined;
}

/** Loads the applicable ignore file; with none, the matcher excludes nothing. */
export async function loadDockerignore(contextDir: string, dockerfilePath: string): Promise<IgnoreMatcher> {
  const file = await findDockerignore(contextDir, dockerfilePath);
  if (file === undefined) return new IgnoreMatcher([]);
  const text = await readFile(file, "utf8");
  return new IgnoreMatcher(parseDockerignore(text, file), file);
}

async function isFile(candidate: string): Promise<boolean> {
  try {
    return (await stat(candidate)).isFile();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw error;
  }
}
