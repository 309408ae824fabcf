import moo from "moo";

/**
 * Word-level lexing of instruction text, with Docker's rules for where words
 * start and end. Quotes and escapes are kept in the words: removing them is
 * shell-word expansion's job, which happens later and only for instructions
 * that expand.
 */

import type { EscapeChar } from "./shell-words.ts";

export type { EscapeChar };

/** Go's unicode.IsSpace, which Docker uses to separate words. */
const SPACE_CLASS = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const SPACE_RUN = new RegExp(`[${SPACE_CLASS}]+`);
export const LEADING_SPACE = new RegExp(`^[${SPACE_CLASS}]+`);
export const TRAILING_SPACE = new RegExp(`[${SPACE_CLASS}]+$`);
/** The separator of whitespace-delimited argument lists (Docker's reWhitespace: ASCII only). */
const ASCII_SPACE_RUN = /[\t\v\f\r ]+/;
const ASCII_SPACE_RUNS = /[\t\v\f\r ]+/g;

export function trimSpace(text: string): string {
  return text.replace(LEADING_SPACE, "").replace(TRAILING_SPACE, "");
}

/** Go's unicode.IsSpace for one character. */
export function isSpace(char: string): boolean {
  const code = char.charCodeAt(0);
  if (code <= 0x20) return code === 0x20 || (code >= 0x09 && code <= 0x0d);
  if (code < 0x85) return false;
  return (
    code === 0x85 || code === 0xa0 || code === 0x1680 || (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 || code === 0x2029 || code === 0x202f || code === 0x205f || code === 0x3000
  );
}

/** A word of instruction text with its offsets (end exclusive) in that text. */
export interface Word {
  text: string;
  start: number;
  end: number;
}

function escapeForRegex(char: string): string {
  return char === "\\" ? "\\\\" : char;
}

/**
 * Lexer for Dockerfile words (Docker's parseWords): whitespace separates words
 * except inside quotes or after the escape character; inside single quotes the
 * escape character is literal.
 */
function makeWordLexer(escape: EscapeChar): moo.Lexer {
  const e = escapeForRegex(escape);
  return moo.states({
    word: {
      space: { match: SPACE_RUN, lineBreaks: true },
      escaped: { match: new RegExp(`${e}[^]`), lineBreaks: true },
      danglingEscape: e === "\\\\" ? "\\" : "`",
      squote: { match: "'", push: "single" },
      dquote: { match: '"', push: "double" },
      text: { match: new RegExp(`[^${SPACE_CLASS}'"${e}]+`), lineBreaks: true },
    },
    single: {
      squote: { match: "'", pop: 1 },
      text: { match: /[^']+/, lineBreaks: true },
    },
    double: {
      dquote: { match: '"', pop: 1 },
      escaped: { match: new RegExp(`${e}[^]`), lineBreaks: true },
      danglingEscape: e === "\\\\" ? "\\" : "`",
      text: { match: new RegExp(`[^"${e}]+`), lineBreaks: true },
    },
  });
}

/**
 * Lexer for builder flags (Docker's extractBuilderFlags): the escape is always
 * a backslash, it works inside both kinds of quotes, and quotes are removed.
 */
function makeFlagLexer(): moo.Lexer {
  return moo.states({
    word: {
      space: { match: SPACE_RUN, lineBreaks: true },
      escaped: { match: /\\[^]/, lineBreaks: true },
      danglingEscape: "\\",
      squote: { match: "'", push: "single" },
      dquote: { match: '"', push: "double" },
      text: { match: new RegExp(`[^${SPACE_CLASS}'"\\\\]+`), lineBreaks: true },
    },
    single: {
      squote: { match: "'", pop: 1 },
      escaped: { match: /\\[^]/, lineBreaks: true },
      danglingEscape: "\\",
      text: { match: /[^'\\]+/, lineBreaks: true },
    },
    double: {
      dquote: { match: '"', pop: 1 },
      escaped: { match: /\\[^]/, lineBreaks: true },
      danglingEscape: "\\",
      text: { match: /[^"\\]+/, lineBreaks: true },
    },
  });
}

const wordLexers = new Map<EscapeChar, moo.Lexer>();
let flagLexer: moo.Lexer | undefined;

function wordLexer(escape: EscapeChar): moo.Lexer {
  let lexer = wordLexers.get(escape);
  if (!lexer) {
    lexer = makeWordLexer(escape);
    wordLexers.set(escape, lexer);
  }
  return lexer;
}

/**
 * Splits text into words the way Docker's parseWords does (ENV, LABEL, ARG):
 * quotes and escapes stay in the words; an escape at the very end is dropped.
 */
export function splitWords(text: string, escape: EscapeChar): Word[] {
  const lexer = wordLexer(escape);
  lexer.reset(text);
  const words: Word[] = [];
  let current = "";
  let start = -1;
  let end = 0;
  for (const token of lexer) {
    if (token.type === "space") {
      if (start >= 0) words.push({ text: current, start, end });
      current = "";
      start = -1;
      continue;
    }
    if (start < 0) start = token.offset;
    end = token.offset + token.text.length;
    if (token.type === "danglingEscape" && end === text.length) continue;
    current += token.text;
  }
  if (start >= 0) words.push({ text: current, start, end });
  return words;
}

/** A builder flag as written (`--name=value`), with quotes and escapes removed from `word`. */
export interface FlagWord {
  /** The flag with quotes and escapes removed, e.g. `--chown=a b`. */
  word: string;
  /** The flag exactly as written. */
  raw: string;
  start: number;
  end: number;
}

/**
 * Takes the leading `--flag` words off an instruction's arguments (Docker's
 * extractBuilderFlags). A lone `--` ends the flags. Returns the flags and the
 * offset where the remaining arguments start.
 */
export function extractFlags(text: string): { flags: FlagWord[]; restOffset: number } {
  flagLexer ??= makeFlagLexer();
  const lexer = flagLexer;
  const flags: FlagWord[] = [];
  let position = 0;
  while (position < text.length) {
    const wordStart = skipSpaceForward(text, position);
    if (wordStart >= text.length) return { flags, restOffset: text.length };
    if (!text.startsWith("--", wordStart)) return { flags, restOffset: wordStart };
    lexer.reset(text.slice(wordStart));
    let word = "";
    let wordEnd = text.length;
    for (const token of lexer) {
      if (token.type === "space") {
        wordEnd = wordStart + token.offset;
        break;
      }
      switch (token.type) {
        case "squote":
        case "dquote":
          break;
        case "escaped":
          word += token.text.slice(1);
          break;
        case "danglingEscape":
          break;
        default:
          word += token.text;
      }
    }
    if (word === "--") {
      return { flags, restOffset: skipSpaceForward(text, wordEnd) };
    }
    flags.push({ word, raw: text.slice(wordStart, wordEnd), start: wordStart, end: wordEnd });
    position = wordEnd;
  }
  return { flags, restOffset: text.length };
}

/** The offset of the first non-space character at or after `from`. */
export function skipSpaceForward(text: string, from: number): number {
  let position = from;
  while (position < text.length && isSpace(text[position] as string)) position++;
  return position;
}

/** The offset just past the last non-space character before `to`. */
export function skipSpaceBackward(text: string, to: number): number {
  let position = to;
  while (position > 0 && isSpace(text[position - 1] as string)) position--;
  return position;
}

/**
 * Splits on runs of ASCII whitespace (Docker's parseStringsWhitespaceDelimited:
 * FROM, EXPOSE, and the non-JSON forms of COPY, ADD and VOLUME).
 */
export function splitOnWhitespace(text: string, baseOffset = 0): Word[] {
  if (text === "") return [];
  const words: Word[] = [];
  const separator = ASCII_SPACE_RUNS;
  separator.lastIndex = 0;
  let start = 0;
  for (let match = separator.exec(text); match; match = separator.exec(text)) {
    words.push({ text: text.slice(start, match.index), start: baseOffset + start, end: baseOffset + match.index });
    start = match.index + match[0].length;
  }
  words.push({ text: text.slice(start), start: baseOffset + start, end: baseOffset + text.length });
  return words;
}

/** Splits once on the first run of ASCII whitespace (ENV's and LABEL's legacy `KEY value` form). */
export function splitOnceOnWhitespace(text: string): [string, string] | [string] {
  const match = ASCII_SPACE_RUN.exec(text);
  if (!match) return [text];
  return [text.slice(0, match.index), text.slice(match.index + match[0].length)];
}
