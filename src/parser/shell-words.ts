/**
 * Dockerfile shell-word expansion: quotes, the escape character and `$VAR` /
 * `${VAR...}` substitutions, with word splitting. Matches BuildKit's
 * behaviour (its `shell.Lex`), including its quirks, so that a Dockerfile
 * expands here exactly as it does under `docker build`.
 */

export type EscapeChar = "\\" | "`";

export interface ShellLexOptions {
  /** The escape character; defaults to a backslash. */
  escape?: EscapeChar;
  /** Keep quote characters in the output. */
  rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  rawEscapes?: boolean;
  /** Leave `$VAR` / `${VAR...}` text as written when VAR is unset. */
  skipUnsetEnv?: boolean;
  /** Treat quote characters as ordinary characters. */
  skipProcessQuotes?: boolean;
}

/** A lookup of variables; undefined = unset. Use a Map or plain function. */
export type ShellEnv = ReadonlyMap<string, string> | ((name: string) => string | undefined);

export class ShellExpansionError extends Error {
  /** Index in the word where the problem is, best effort. */
  readonly offset: number;
  /** The problem itself, without the "failed to process" prefix. */
  readonly reason: string;

  constructor(message: string, offset: number, reason: string = message) {
    super(message);
    this.name = "ShellExpansionError";
    this.offset = offset;
    this.reason = reason;
  }
}

export interface WordExpansionWithMatches {
  result: string;
  /** Variables referenced by the word that were set. */
  matched: Set<string>;
  /** Variables referenced by the word that were unset. */
  unmatched: Set<string>;
}

/** Expands a word to a single string (BuildKit's ProcessWord). */
export function expandWord(word: string, env: ShellEnv, options?: ShellLexOptions): string {
  return runExpansion(word, env, options, false, null);
}

/** Expands a word and reports which variables it referenced (ProcessWordWithMatches). */
export function expandWordWithMatches(
  word: string,
  env: ShellEnv,
  options?: ShellLexOptions,
): WordExpansionWithMatches {
  const expansion = new WordExpansion(word, toLookup(env), resolveOptions(options), true);
  const result = guardStack(word, () => expansion.expand(null));
  return { result, matched: expansion.matched, unmatched: expansion.unmatched };
}

/**
 * Expands a word and splits it on unquoted whitespace (ProcessWords).
 * Splitting happens after substitution, so whitespace inside variable values
 * splits too, while quoted or escaped whitespace does not.
 */
export function expandWords(word: string, env: ShellEnv, options?: ShellLexOptions): string[] {
  const words = new WordCollector();
  runExpansion(word, env, options, false, words);
  return words.finish();
}

// ---------------------------------------------------------------------------
// Expansion of quotes, escapes and substitutions

const END = -1;
const CH_NEWLINE = 0x0a;
const CH_DQUOTE = 0x22;
const CH_HASH = 0x23;
const CH_DOLLAR = 0x24;
const CH_SQUOTE = 0x27;
const CH_STAR = 0x2a;
const CH_MINUS = 0x2d;
const CH_SLASH = 0x2f;
const CH_COLON = 0x3a;
const CH_QUESTION = 0x3f;
const CH_BACKSLASH = 0x5c;
const CH_UNDERSCORE = 0x5f;
const CH_LBRACE = 0x7b;
const CH_RBRACE = 0x7d;
const BYTE_ORDER_MARK = 0xfeff;

/**
 * Deepest `${...}` nesting accepted. Far beyond any real Dockerfile, and low
 * enough that recursion can never overflow the JavaScript stack.
 */
const MAX_NESTING = 500;

interface ResolvedOptions {
  escapeChar: string;
  escapeCode: number;
  rawQuotes: boolean;
  rawEscapes: boolean;
  skipUnsetEnv: boolean;
  processQuotes: boolean;
}

type Lookup = (name: string) => string | undefined;

function resolveOptions(options: ShellLexOptions | undefined): ResolvedOptions {
  const escapeChar = options?.escape ?? "\\";
  return {
    escapeChar,
    escapeCode: escapeChar.charCodeAt(0),
    rawQuotes: options?.rawQuotes ?? false,
    rawEscapes: options?.rawEscapes ?? false,
    skipUnsetEnv: options?.skipUnsetEnv ?? false,
    processQuotes: !(options?.skipProcessQuotes ?? false),
  };
}

function toLookup(env: ShellEnv): Lookup {
  if (typeof env === "function") return env;
  return (name) => env.get(name);
}

function runExpansion(
  word: string,
  env: ShellEnv,
  options: ShellLexOptions | undefined,
  capture: boolean,
  words: WordCollector | null,
): string {
  const expansion = new WordExpansion(word, toLookup(env), resolveOptions(options), capture);
  return guardStack(word, () => expansion.expand(words));
}

/** Safety net: a stack overflow must surface as a ShellExpansionError too. */
function guardStack<T>(word: string, run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (error instanceof RangeError) {
      const reason = /call stack/i.test(error.message) ? "word is nested too deeply" : "word is too large to expand";
      throw new ShellExpansionError(failureMessage(word, reason), 0, reason);
    }
    throw error;
  }
}

function failureMessage(word: string, reason: string): string {
  return `failed to process ${JSON.stringify(word)}: ${reason}`;
}

/** One expansion of one word; holds the scanning position. */
class WordExpansion {
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();
  private pos = 0;
  private rawEscapes = false;
  private nesting = 0;

  constructor(
    private readonly word: string,
    private readonly lookup: Lookup,
    private readonly options: ResolvedOptions,
    private readonly capture: boolean,
  ) {
    // A byte order mark opening the word is dropped, as Go's text scanner does.
    if (word.charCodeAt(0) === BYTE_ORDER_MARK) this.pos = 1;
  }

  expand(words: WordCollector | null): string {
    return this.expandUntil(END, this.options.rawEscapes, words);
  }

  private fail(reason: string, offset: number): ShellExpansionError {
    return new ShellExpansionError(failureMessage(this.word, reason), offset, reason);
  }

  private atEnd(): boolean {
    return this.pos >= this.word.length;
  }

  /**
   * Expands up to the `stop` character (consumed) or the end of the word.
   * Only the top level collects split words; nested calls pass null.
   */
  private expandUntil(stop: number, rawEscapes: boolean, words: WordCollector | null): string {
    const savedRawEscapes = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      const out = this.expandSequence(stop, words);
      if (out === null) throw this.fail(`unexpected end of statement while looking for matching ${String.fromCharCode(stop)}`, this.pos);
      return out;
    } finally {
      this.rawEscapes = savedRawEscapes;
    }
  }

  /** The loop of expandUntil; null when `stop` was required but not found. */
  private expandSequence(stop: number, words: WordCollector | null): string | null {
    const { word } = this;
    const { escapeCode, escapeChar, processQuotes } = this.options;
    let out = "";
    while (this.pos < word.length) {
      const code = word.charCodeAt(this.pos);
      if (code === stop) {
        this.pos++;
        return out;
      }
      if (code === CH_DOLLAR) {
        const value = this.expandDollar();
        out += value;
        words?.addSplittable(value);
      } else if (processQuotes && (code === CH_SQUOTE || code === CH_DQUOTE)) {
        const quoted = code === CH_SQUOTE ? this.expandSingleQuoted() : this.expandDoubleQuoted();
        out += quoted;
        words?.addVerbatim(quoted);
      } else if (code === escapeCode) {
        this.pos++;
        if (this.rawEscapes) {
          out += escapeChar;
          words?.addVerbatim(escapeChar);
        }
        // An escape at the very end is dropped.
        if (this.atEnd()) break;
        const escaped = this.takeCodePoint();
        out += escaped;
        words?.addVerbatim(escaped);
      } else {
        const plain = this.takePlainRun(stop);
        out += plain;
        words?.addSplittable(plain);
      }
    }
    return stop === END ? out : null;
  }

  /** Consumes ordinary characters in one slice rather than one at a time. */
  private takePlainRun(stop: number): string {
    const { word } = this;
    const { escapeCode, processQuotes } = this.options;
    const start = this.pos++;
    while (this.pos < word.length) {
      const code = word.charCodeAt(this.pos);
      if (code === CH_DOLLAR || code === escapeCode || code === stop) break;
      if (processQuotes && (code === CH_SQUOTE || code === CH_DQUOTE)) break;
      this.pos++;
    }
    return word.slice(start, this.pos);
  }

  private takeCodePoint(): string {
    const codePoint = this.word.codePointAt(this.pos) ?? 0;
    const text = String.fromCodePoint(codePoint);
    this.pos += text.length;
    return text;
  }

  /** Everything up to the next single quote is literal; there is no escape. */
  private expandSingleQuoted(): string {
    const open = this.pos;
    const close = this.word.indexOf("'", open + 1);
    if (close < 0) {
      // Consumed to the end, so an enclosing `${` reports a missing `}`.
      this.pos = this.word.length;
      throw this.fail("unexpected end of statement while looking for matching single-quote", open);
    }
    this.pos = close + 1;
    const text = this.word.slice(open + 1, close);
    return this.options.rawQuotes ? `'${text}'` : text;
  }

  /** Substitutions apply; the escape only escapes `"`, `$` and itself. */
  private expandDoubleQuoted(): string {
    const { word } = this;
    const { escapeCode, escapeChar, rawQuotes } = this.options;
    const open = this.pos++;
    let out = rawQuotes ? '"' : "";
    for (;;) {
      if (this.atEnd()) {
        throw this.fail("unexpected end of statement while looking for matching double-quote", open);
      }
      const code = word.charCodeAt(this.pos);
      if (code === CH_DQUOTE) {
        this.pos++;
        return rawQuotes ? `${out}"` : out;
      }
      if (code === CH_DOLLAR) {
        out += this.expandDollar();
      } else if (code === escapeCode) {
        out += this.expandEscapeInDoubleQuotes(escapeChar, escapeCode);
      } else {
        const start = this.pos++;
        while (this.pos < word.length) {
          const next = word.charCodeAt(this.pos);
          if (next === CH_DQUOTE || next === CH_DOLLAR || next === escapeCode) break;
          this.pos++;
        }
        out += word.slice(start, this.pos);
      }
    }
  }

  /**
   * With rawEscapes, an escape before an ordinary character comes out
   * doubled; that matches BuildKit's behaviour.
   */
  private expandEscapeInDoubleQuotes(escapeChar: string, escapeCode: number): string {
    this.pos++;
    const prefix = this.rawEscapes ? escapeChar : "";
    if (this.atEnd()) return prefix;
    const next = this.word.charCodeAt(this.pos);
    if (next === CH_DQUOTE || next === CH_DOLLAR || next === escapeCode) {
      this.pos++;
      return prefix + String.fromCharCode(next);
    }
    return prefix + escapeChar;
  }

  private expandDollar(): string {
    const dollarPos = this.pos++;
    if (this.word.charCodeAt(this.pos) !== CH_LBRACE) return this.expandBareName();
    this.pos++;
    if (this.nesting >= MAX_NESTING) {
      throw this.fail(`substitutions nested more than ${MAX_NESTING} deep`, dollarPos);
    }
    this.nesting++;
    try {
      return this.expandBraced(dollarPos);
    } finally {
      this.nesting--;
    }
  }

  /** `$name`; a `$` not followed by a name stays literal. */
  private expandBareName(): string {
    const name = this.readName();
    if (name === "") return "$";
    const value = this.lookupVariable(name);
    if (value === undefined && this.options.skipUnsetEnv) return `$${name}`;
    return value ?? "";
  }

  /** Everything after `${`. */
  private expandBraced(dollarPos: number): string {
    if (this.atEnd()) throw this.fail("syntax error: missing '}'", dollarPos);
    const first = this.word.charCodeAt(this.pos);
    if (first === CH_LBRACE || first === CH_RBRACE || first === CH_COLON) {
      throw this.fail("syntax error: bad substitution", dollarPos);
    }
    const name = this.readName();
    if (this.atEnd()) throw this.fail("syntax error: missing '}'", dollarPos);
    const operatorPos = this.pos;
    const operator = this.takeCodePoint();
    switch (operator) {
      case "}":
        return this.expandPlainBraced(name);
      case ":":
        return this.expandColonModifier(name, dollarPos);
      case "+":
      case "-":
      case "?":
      case "#":
      case "%":
        return this.expandModifier(name, operator, operator, false, dollarPos);
      case "/":
        return this.expandReplacement(name, dollarPos);
      default:
        throw this.fail(`unsupported modifier (${operator}) in substitution`, operatorPos);
    }
  }

  private expandPlainBraced(name: string): string {
    const value = this.lookupVariable(name);
    if (value === undefined && this.options.skipUnsetEnv) return `\${${name}}`;
    return value ?? "";
  }

  /** `${name:op...}`: like `${name op...}` but an empty value counts as unset. */
  private expandColonModifier(name: string, dollarPos: number): string {
    const operatorPos = this.pos;
    const operator = this.atEnd() ? "" : this.takeCodePoint();
    const spelled = `:${operator}`;
    if (operator === "#" || operator === "%") {
      throw this.fail(`unsupported modifier (${spelled}) in substitution`, operatorPos);
    }
    return this.expandModifier(name, operator, spelled, true, dollarPos);
  }

  /** The `-`, `+`, `?`, `#` and `%` forms (and unknown ones after `:`). */
  private expandModifier(
    name: string,
    operator: string,
    spelled: string,
    emptyIsUnset: boolean,
    dollarPos: number,
  ): string {
    // Patterns keep their escapes so the pattern matcher can see them.
    const isPattern = operator === "#" || operator === "%";
    const argument = this.expandNested(CH_RBRACE, isPattern, "syntax error: missing '}'", dollarPos);
    const value = this.lookupVariable(name);
    if (value === undefined && this.options.skipUnsetEnv) return `\${${name}${spelled}${argument}}`;
    const isUnset = value === undefined || (emptyIsUnset && value === "");
    switch (operator) {
      case "-":
        return isUnset ? argument : (value ?? "");
      case "+":
        return isUnset ? "" : argument;
      case "?":
        return this.requireValue(name, value, emptyIsUnset, argument, dollarPos);
      case "#":
      case "%":
        return this.trimByPattern(value ?? "", operator, argument, dollarPos);
      default:
        throw this.fail(`unsupported modifier (${spelled}) in substitution`, dollarPos + 2 + name.length);
    }
  }

  private requireValue(
    name: string,
    value: string | undefined,
    emptyIsUnset: boolean,
    message: string,
    dollarPos: number,
  ): string {
    if (value === undefined) {
      throw this.fail(`${name}: ${message || "is not allowed to be unset"}`, dollarPos);
    }
    if (emptyIsUnset && value === "") {
      throw this.fail(`${name}: ${message || "is not allowed to be empty"}`, dollarPos);
    }
    return value;
  }

  /** `#`/`%` trim the shortest match; `##`/`%%` the longest. */
  private trimByPattern(value: string, operator: "#" | "%", pattern: string, dollarPos: number): string {
    const greedy = pattern.startsWith(operator);
    const body = greedy ? pattern.slice(1) : pattern;
    try {
      return operator === "#" ? trimPrefixMatch(value, body, greedy) : trimSuffixMatch(value, body, greedy);
    } catch (error) {
      throw this.patternFailure(error, body, dollarPos);
    }
  }

  /** `${name/pattern/replacement}` and `${name//pattern/replacement}`. */
  private expandReplacement(name: string, dollarPos: number): string {
    const replaceAll = this.word.charCodeAt(this.pos) === CH_SLASH;
    if (replaceAll) this.pos++;
    const pattern = this.expandNested(CH_SLASH, true, "syntax error: missing '/' in ${}", dollarPos);
    const replacement = this.expandNested(CH_RBRACE, true, "syntax error: missing '}'", dollarPos);
    const value = this.lookupVariable(name);
    if (value === undefined && this.options.skipUnsetEnv) {
      // A single slash even for `//`: matches BuildKit's behaviour.
      return `\${${name}/${pattern}/${replacement}}`;
    }
    try {
      return replacePatternMatches(value ?? "", pattern, replacement, replaceAll);
    } catch (error) {
      throw this.patternFailure(error, pattern, dollarPos);
    }
  }

  /** A nested expansion; any failure at the end of the word reads as `endMessage`. */
  private expandNested(stop: number, rawEscapes: boolean, endMessage: string, dollarPos: number): string {
    try {
      return this.expandUntil(stop, rawEscapes, null);
    } catch (error) {
      if (error instanceof ShellExpansionError && this.atEnd()) throw this.fail(endMessage, dollarPos);
      throw error;
    }
  }

  private patternFailure(error: unknown, pattern: string, dollarPos: number): unknown {
    if (!(error instanceof PatternSyntaxError)) return error;
    return this.fail(`invalid pattern (${pattern}) in substitution: ${error.message}`, dollarPos);
  }

  private lookupVariable(name: string): string | undefined {
    const value = this.lookup(name);
    if (this.capture) (value === undefined ? this.unmatched : this.matched).add(name);
    return value;
  }

  /**
   * A variable name: letters, digits and `_`; or a run of digits (positional
   * parameter); or one special-parameter character. Empty if none.
   */
  private readName(): string {
    const { word } = this;
    const start = this.pos;
    const first = word.codePointAt(start);
    if (first === undefined) return "";
    if (isDecimalDigit(first)) {
      this.skipWhile(isDecimalDigit);
      return word.slice(start, this.pos);
    }
    if (isSpecialParameter(first)) {
      this.pos++;
      return word.slice(start, this.pos);
    }
    this.skipWhile(isNameCharacter);
    return word.slice(start, this.pos);
  }

  private skipWhile(accept: (codePoint: number) => boolean): void {
    const { word } = this;
    while (this.pos < word.length) {
      const codePoint = word.codePointAt(this.pos) ?? 0;
      if (!accept(codePoint)) return;
      this.pos += codePoint > 0xffff ? 2 : 1;
    }
  }
}

function isSpecialParameter(code: number): boolean {
  switch (code) {
    case 0x40: // @
    case CH_STAR:
    case CH_HASH:
    case CH_QUESTION:
    case CH_MINUS:
    case CH_DOLLAR:
    case 0x21: // !
    case 0x30: // 0
      return true;
    default:
      return false;
  }
}

const UNICODE_DIGIT = /^\p{Nd}$/u;
const UNICODE_LETTER_OR_DIGIT = /^[\p{L}\p{Nd}]$/u;

/** Any Unicode decimal digit, not just ASCII ones. */
function isDecimalDigit(codePoint: number): boolean {
  if (codePoint < 0x80) return codePoint >= 0x30 && codePoint <= 0x39;
  return UNICODE_DIGIT.test(String.fromCodePoint(codePoint));
}

/** A Unicode letter or decimal digit, or `_`. */
function isNameCharacter(codePoint: number): boolean {
  if (codePoint < 0x80) {
    return (
      (codePoint >= 0x61 && codePoint <= 0x7a) ||
      (codePoint >= 0x41 && codePoint <= 0x5a) ||
      (codePoint >= 0x30 && codePoint <= 0x39) ||
      codePoint === CH_UNDERSCORE
    );
  }
  return UNICODE_LETTER_OR_DIGIT.test(String.fromCodePoint(codePoint));
}

/** Unicode White_Space, the set Go's unicode.IsSpace uses (so not U+FEFF). */
function isUnicodeSpace(code: number): boolean {
  if (code <= 0xa0) {
    return (code >= 0x09 && code <= 0x0d) || code === 0x20 || code === 0x85 || code === 0xa0;
  }
  return (
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000
  );
}

/**
 * Builds the split words. Substituted and unquoted text splits on whitespace;
 * quoted and escaped text never does. An empty quoted string alone does not
 * make a word, which matches BuildKit's behaviour.
 */
class WordCollector {
  private readonly words: string[] = [];
  private current = "";
  private inWord = false;

  addVerbatim(text: string): void {
    this.current += text;
    this.inWord = true;
  }

  addSplittable(text: string): void {
    let runStart = 0;
    for (let i = 0; i < text.length; i++) {
      if (!isUnicodeSpace(text.charCodeAt(i))) continue;
      if (i > runStart) this.addVerbatim(text.slice(runStart, i));
      this.endWord();
      runStart = i + 1;
    }
    if (runStart < text.length) this.addVerbatim(text.slice(runStart));
  }

  finish(): string[] {
    if (this.current.length > 0) this.words.push(this.current);
    this.current = "";
    this.inWord = false;
    return this.words;
  }

  private endWord(): void {
    if (!this.inWord || this.current.length === 0) return;
    this.words.push(this.current);
    this.current = "";
    this.inWord = false;
  }
}

// ---------------------------------------------------------------------------
// Shell patterns for `#`, `%` and `/`.
//
// `*` matches any run and `?` any one character, except a newline; `\` escapes
// `*`, `?` and `\` (any other escape is an error) and may precede `}` or `/`,
// which are literal anyway. Bracket expressions are not supported: `[` is a
// literal character. All matches BuildKit's behaviour. Matching is done by
// dynamic programming in O(pattern × value) time, so no pattern can cause
// catastrophic backtracking.

class PatternSyntaxError extends Error {}

/** Pattern tokens: non-negative values are literal code points. */
const ANY_RUN = -1;
const ANY_ONE = -2;

/** A string as code points, with the string index where each starts. */
interface CodePoints {
  points: Int32Array;
  /** offsets[i] is the string index of point i; offsets[length] = string length. */
  offsets: Int32Array;
}

function toCodePoints(text: string): CodePoints {
  const points = new Int32Array(text.length);
  const offsets = new Int32Array(text.length + 1);
  let count = 0;
  for (let i = 0; i < text.length; ) {
    const codePoint = text.codePointAt(i) ?? 0;
    offsets[count] = i;
    points[count++] = codePoint;
    i += codePoint > 0xffff ? 2 : 1;
  }
  offsets[count] = text.length;
  return { points: points.subarray(0, count), offsets: offsets.subarray(0, count + 1) };
}

function parsePattern(pattern: Int32Array): Int32Array {
  const tokens: number[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const code = pattern[i] ?? 0;
    if (code === CH_STAR) {
      // `**` matches exactly what `*` does.
      if (tokens[tokens.length - 1] !== ANY_RUN) tokens.push(ANY_RUN);
    } else if (code === CH_QUESTION) {
      tokens.push(ANY_ONE);
    } else if (code === CH_BACKSLASH) {
      const next = i + 1 < pattern.length ? (pattern[i + 1] ?? 0) : END;
      // `\}` and `\/` were needed to write the pattern inside `${}`; the
      // character itself is handled on the next round as a literal.
      if (next === CH_RBRACE || next === CH_SLASH) continue;
      if (next !== CH_STAR && next !== CH_QUESTION && next !== CH_BACKSLASH) {
        const shown = next === END ? "" : String.fromCodePoint(next);
        throw new PatternSyntaxError(next === END ? "invalid escape '\\' at end of pattern" : `invalid escape '\\${shown}'`);
      }
      tokens.push(next);
      i++;
    } else {
      tokens.push(code);
    }
  }
  return Int32Array.from(tokens);
}

/** Reverses a pattern, keeping each `\x` pair in order (`a\*c` → `c\*a`). */
function reversePattern(pattern: Int32Array): Int32Array {
  const reversed = new Int32Array(pattern.length);
  const last = pattern.length - 1;
  for (let i = 0; i <= last; ) {
    const code = pattern[i] ?? 0;
    const target = last - i;
    if (code === CH_BACKSLASH && i !== last) {
      reversed[target - 1] = code;
      reversed[target] = pattern[i + 1] ?? 0;
      i += 2;
    } else {
      reversed[target] = code;
      i++;
    }
  }
  return reversed;
}

/** The pattern as a plain string when it has no wildcards, else null. */
function literalText(tokens: Int32Array, backwards = false): string | null {
  let text = "";
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[backwards ? tokens.length - 1 - i : i] ?? 0;
    if (token < 0) return null;
    text += String.fromCodePoint(token);
  }
  return text;
}

/**
 * For every start position s, where the first-preferred match of the
 * pattern starting at s ends, or -1. "First-preferred" is the match a
 * backtracking matcher finds: each `*` as short as possible (lazy) or as long
 * as possible (greedy), earlier wildcards taking precedence.
 */
function matchEndsByStart(tokens: Int32Array, text: Int32Array, greedy: boolean): Int32Array {
  const length = text.length;
  // Row for the pattern suffix tokens[t..]: after the last token, a match ends where it starts.
  let after = new Int32Array(length + 1);
  for (let p = 0; p <= length; p++) after[p] = p;
  let row = new Int32Array(length + 1);
  for (let t = tokens.length - 1; t >= 0; t--) {
    const token = tokens[t] ?? 0;
    const anyMatch = token === ANY_RUN ? fillRunRow(row, after, text, greedy) : fillSingleRow(row, after, text, token);
    [after, row] = [row, after];
    if (!anyMatch) return after.fill(-1);
  }
  return after;
}

/** `*` at p may take text[p..j) for any j up to the next newline. */
function fillRunRow(row: Int32Array, after: Int32Array, text: Int32Array, greedy: boolean): boolean {
  let chosen = -1;
  let anyMatch = false;
  for (let p = text.length; p >= 0; p--) {
    if (p < text.length && text[p] === CH_NEWLINE) chosen = -1;
    const end = after[p] ?? -1;
    // Scanning leftwards, the first hit is the longest take, the latest the shortest.
    if (end >= 0 && (!greedy || chosen < 0)) chosen = end;
    row[p] = chosen;
    if (chosen >= 0) anyMatch = true;
  }
  return anyMatch;
}

function fillSingleRow(row: Int32Array, after: Int32Array, text: Int32Array, token: number): boolean {
  let anyMatch = false;
  const last = text.length;
  row[last] = -1;
  for (let p = 0; p < last; p++) {
    const code = text[p] ?? 0;
    const matches = token === ANY_ONE ? code !== CH_NEWLINE : code === token;
    const end = matches ? (after[p + 1] ?? -1) : -1;
    row[p] = end;
    if (end >= 0) anyMatch = true;
  }
  return anyMatch;
}

function trimPrefixMatch(value: string, pattern: string, greedy: boolean): string {
  const tokens = parsePattern(toCodePoints(pattern).points);
  const literal = literalText(tokens);
  if (literal !== null) return value.startsWith(literal) ? value.slice(literal.length) : value;
  const text = toCodePoints(value);
  const end = matchEndsByStart(tokens, text.points, greedy)[0] ?? -1;
  return end < 0 ? value : value.slice(text.offsets[end]);
}

/** Matches the reversed pattern against the reversed value, as a prefix. */
function trimSuffixMatch(value: string, pattern: string, greedy: boolean): string {
  const tokens = parsePattern(reversePattern(toCodePoints(pattern).points));
  const literal = literalText(tokens, true);
  if (literal !== null) {
    return value.endsWith(literal) ? value.slice(0, value.length - literal.length) : value;
  }
  const text = toCodePoints(value);
  const reversed = text.points.slice().reverse();
  const trimmed = matchEndsByStart(tokens, reversed, greedy)[0] ?? -1;
  return trimmed < 0 ? value : value.slice(0, text.offsets[reversed.length - trimmed]);
}

function replacePatternMatches(value: string, pattern: string, replacement: string, replaceAll: boolean): string {
  const tokens = parsePattern(toCodePoints(pattern).points);
  const literal = literalText(tokens);
  if (literal !== null && literal !== "") {
    if (!replaceAll) {
      const at = value.indexOf(literal);
      return at < 0 ? value : value.slice(0, at) + replacement + value.slice(at + literal.length);
    }
    return value.split(literal).join(expandReplacementTemplate(parseReplacementTemplate(replacement), literal));
  }
  const text = toCodePoints(value);
  const ends = matchEndsByStart(tokens, text.points, true);
  if (!replaceAll) {
    const start = ends.findIndex((end) => end >= 0);
    if (start < 0) return value;
    const end = ends[start] ?? start;
    return value.slice(0, text.offsets[start]) + replacement + value.slice(text.offsets[end]);
  }
  return replaceEveryMatch(value, text.offsets, ends, parseReplacementTemplate(replacement));
}

/**
 * Replaces successive non-overlapping matches; an empty match right after a
 * previous match is not replaced (Go's regexp ReplaceAllString rules).
 */
function replaceEveryMatch(
  value: string,
  offsets: Int32Array,
  ends: Int32Array,
  template: ReplacementTemplate,
): string {
  const length = ends.length - 1;
  const nextStart = nextMatchStarts(ends);
  let out = "";
  let lastMatchEnd = 0;
  for (let searchPos = 0; searchPos <= length; ) {
    const start = nextStart[searchPos] ?? -1;
    if (start < 0) break;
    const end = ends[start] ?? start;
    out += value.slice(offsets[lastMatchEnd], offsets[start]);
    if (end > lastMatchEnd || start === 0) {
      out += expandReplacementTemplate(template, value.slice(offsets[start], offsets[end]));
    }
    lastMatchEnd = end;
    searchPos = Math.max(searchPos + 1, end);
  }
  return out + value.slice(offsets[lastMatchEnd]);
}

/** For each position, the first position at or after it where a match starts. */
function nextMatchStarts(ends: Int32Array): Int32Array {
  const next = new Int32Array(ends.length);
  let upcoming = -1;
  for (let p = ends.length - 1; p >= 0; p--) {
    if ((ends[p] ?? -1) >= 0) upcoming = p;
    next[p] = upcoming;
  }
  return next;
}

/**
 * `${v//p/r}` reads `$` in r as Go's regexp templates do: `$0`/`${0}` is the
 * match, `$$` a dollar, other references empty (patterns have no groups), and
 * a malformed reference a literal `$`. `${v/p/r}` uses r as is.
 */
const WHOLE_MATCH = Symbol("whole match");
type ReplacementTemplate = ReadonlyArray<string | typeof WHOLE_MATCH>;

function parseReplacementTemplate(template: string): ReplacementTemplate {
  const parts: Array<string | typeof WHOLE_MATCH> = [];
  let literal = "";
  let i = 0;
  for (;;) {
    const dollar = template.indexOf("$", i);
    if (dollar < 0) break;
    literal += template.slice(i, dollar);
    i = dollar + 1;
    if (template.charCodeAt(i) === CH_DOLLAR) {
      literal += "$";
      i++;
      continue;
    }
    const reference = readTemplateReference(template, i);
    if (reference === null) {
      literal += "$";
      continue;
    }
    i = reference.next;
    if (reference.name === "0") {
      parts.push(literal, WHOLE_MATCH);
      literal = "";
    }
  }
  parts.push(literal + template.slice(i));
  return parts;
}

function readTemplateReference(template: string, start: number): { name: string; next: number } | null {
  const braced = template.charCodeAt(start) === CH_LBRACE;
  const nameStart = braced ? start + 1 : start;
  let i = nameStart;
  while (i < template.length) {
    const codePoint = template.codePointAt(i) ?? 0;
    if (!isNameCharacter(codePoint)) break;
    i += codePoint > 0xffff ? 2 : 1;
  }
  if (i === nameStart) return null;
  const name = template.slice(nameStart, i);
  if (!braced) return { name, next: i };
  return template.charCodeAt(i) === CH_RBRACE ? { name, next: i + 1 } : null;
}

function expandReplacementTemplate(template: ReplacementTemplate, match: string): string {
  let out = "";
  for (const part of template) out += part === WHOLE_MATCH ? match : part;
  return out;
}
