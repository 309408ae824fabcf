import { KEYWORDS, type Flag, type Instruction, type Keyword, type KeyValue } from "./ast.ts";
import type { OffsetMap } from "./span.ts";
import { closestMatch } from "./suggest.ts";
import {
  LEADING_SPACE,
  extractFlags,
  skipSpaceBackward,
  skipSpaceForward,
  splitOnWhitespace,
  splitOnceOnWhitespace,
  splitWords,
  type EscapeChar,
  type Word,
} from "./words.ts";

/** Reports a problem at offsets of the logical line's text; never returns. */
export type Fail = (message: string, start: number, end: number, hint?: string) => never;

export interface LineContext {
  /** The logical line. */
  text: string;
  map: OffsetMap;
  escape: EscapeChar;
  fail: Fail;
}

/** Offsets (in the logical line) of an instruction's parts, for pointing at errors later. */
export interface InstructionOffsets {
  keyword: Word;
  /** Where the arguments (after the flags) start and end. */
  argsStart: number;
  argsEnd: number;
  /** One entry per element of `args`. */
  argWords: Word[];
}

export interface ParsedLine {
  instruction: Instruction;
  offsets: InstructionOffsets;
  /** For ONBUILD: the wrapped instruction's own offsets. */
  trigger?: ParsedLine;
}

const KEYWORD_SET: ReadonlySet<string> = new Set(KEYWORDS);
const FIRST_ASCII_SPACE = /[\t\v\f\r ]+/;

/** Splits one logical line into keyword, flags and arguments, the way Docker's parser does. */
export function parseInstructionLine(ctx: LineContext, from = 0): ParsedLine {
  const start = skipSpaceForward(ctx.text, from);
  const end = Math.max(start, skipSpaceBackward(ctx.text, ctx.text.length));
  const body = ctx.text.slice(start, end);

  const separator = FIRST_ASCII_SPACE.exec(body);
  const keywordText = separator ? body.slice(0, separator.index) : body;
  const keywordWord: Word = { text: keywordText, start, end: start + keywordText.length };
  const keyword = keywordText.toLowerCase();
  if (!KEYWORD_SET.has(keyword)) failUnknownInstruction(ctx, keywordWord);

  const afterKeyword = separator ? start + separator.index + separator[0].length : end;
  const { flags: flagWords, restOffset } = extractFlags(ctx.text.slice(afterKeyword, end));
  const flags = flagWords.map((word): Flag => {
    const equals = word.word.indexOf("=");
    return {
      name: equals < 0 ? word.word.slice(2) : word.word.slice(2, equals),
      value: equals < 0 ? undefined : word.word.slice(equals + 1),
      raw: word.raw,
      span: ctx.map.spanOf(afterKeyword + word.start, afterKeyword + word.end),
    };
  });

  const argsStart = afterKeyword + restOffset;
  const argsText = ctx.text.slice(argsStart, end);
  const instruction: Instruction = {
    keyword: keyword as Keyword,
    flags,
    args: [],
    json: false,
    heredocs: [],
    span: ctx.map.spanOf(start, end),
    source: ctx.text.slice(start, end),
    comments: [],
  };
  const offsets: InstructionOffsets = { keyword: keywordWord, argsStart, argsEnd: end, argWords: [] };
  const parsed: ParsedLine = { instruction, offsets };
  parseArguments(ctx, parsed, argsText, argsStart);
  return parsed;
}

function parseArguments(ctx: LineContext, parsed: ParsedLine, text: string, offset: number): void {
  const { instruction } = parsed;
  switch (instruction.keyword) {
    case "add":
    case "copy":
    case "volume":
      setArgs(parsed, parseJsonForm(ctx, instruction.keyword, text, offset) ?? splitOnWhitespace(text, offset));
      return;
    case "run":
    case "cmd":
    case "entrypoint":
    case "shell":
      setArgs(parsed, parseJsonForm(ctx, instruction.keyword, text, offset) ?? wholeText(text, offset));
      return;
    case "expose":
    case "from":
      setArgs(parsed, splitOnWhitespace(text, offset));
      return;
    case "maintainer":
    case "stopsignal":
    case "user":
    case "workdir":
      setArgs(parsed, wholeText(text, offset));
      return;
    case "env":
    case "label":
      instruction.pairs = parseNameValue(ctx, instruction.keyword, text, offset);
      return;
    case "arg":
      instruction.pairs = splitWords(text, ctx.escape).map((word) => argPair(ctx, word, offset));
      return;
    case "healthcheck":
      parseHealthcheckArguments(ctx, parsed, text, offset);
      return;
    case "onbuild":
      if (text !== "") {
        parsed.trigger = parseInstructionLine(ctx, offset);
        instruction.trigger = parsed.trigger.instruction;
        setArgs(parsed, wholeText(text, offset));
      }
      return;
  }
}

function setArgs(parsed: ParsedLine, words: Word[] | { json: true; words: Word[] }): void {
  if (Array.isArray(words)) {
    parsed.offsets.argWords = words;
  } else {
    parsed.instruction.json = true;
    parsed.offsets.argWords = words.words;
  }
  parsed.instruction.args = parsed.offsets.argWords.map((word) => word.text);
}

function wholeText(text: string, offset: number): Word[] {
  return text === "" ? [] : [{ text, start: offset, end: offset + text.length }];
}

/**
 * Docker's exec form: a JSON array of strings. Text that does not parse as
 * JSON falls back to shell form; a valid JSON array with a non-string element
 * is an error, as in Docker. Returns undefined for "not JSON".
 */
function parseJsonForm(
  ctx: LineContext,
  keyword: Keyword,
  text: string,
  offset: number,
): { json: true; words: Word[] } | undefined {
  if (!text.startsWith("[")) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  const badIndex = value.findIndex((element) => typeof element !== "string");
  if (badIndex >= 0) {
    const element: unknown = value[badIndex];
    ctx.fail(
      `${keyword.toUpperCase()} in JSON (exec) form must be an array of strings, but element ${badIndex + 1} is ${describeJson(element)}`,
      offset,
      offset + text.length,
      `quote every element, e.g. ["echo", "1"], or write the command without brackets (shell form)`,
    );
  }
  // Elements carry the span of the whole array: JSON escapes make per-element offsets unreliable.
  const words = (value as string[]).map((element) => ({ text: element, start: offset, end: offset + text.length }));
  return { json: true, words };
}

function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `the ${typeof value} ${JSON.stringify(value)}`;
}

/** ENV and LABEL: `KEY value` (legacy: one pair, the rest of the line is the value) or `k=v ...`. */
function parseNameValue(ctx: LineContext, keyword: Keyword, text: string, offset: number): KeyValue[] {
  const words = splitWords(text, ctx.escape);
  const first = words[0];
  if (!first) return [];
  const upper = keyword.toUpperCase();
  if (!first.text.includes("=")) {
    const parts = splitOnceOnWhitespace(text);
    if (parts.length < 2) {
      ctx.fail(
        `${upper} ${first.text} has no value`,
        offset + first.start,
        offset + first.end,
        `write ${upper} ${first.text}=value (an empty value is ${upper} ${first.text}="")`,
      );
    }
    return [{ key: parts[0], value: parts[1], span: ctx.map.spanOf(offset, offset + text.length) }];
  }
  return words.map((word) => {
    const equals = word.text.indexOf("=");
    if (equals < 0) {
      ctx.fail(
        `${upper} arguments must be of the form name=value, but "${word.text}" has no "="`,
        offset + word.start,
        offset + word.end,
        `write ${word.text}=value, or quote the value if it contains spaces: name="a b"`,
      );
    }
    return {
      key: word.text.slice(0, equals),
      value: word.text.slice(equals + 1),
      span: ctx.map.spanOf(offset + word.start, offset + word.end),
    };
  });
}

function argPair(ctx: LineContext, word: Word, offset: number): KeyValue {
  const equals = word.text.indexOf("=");
  return {
    key: equals < 0 ? word.text : word.text.slice(0, equals),
    value: equals < 0 ? undefined : word.text.slice(equals + 1),
    span: ctx.map.spanOf(offset + word.start, offset + word.end),
  };
}

/** HEALTHCHECK: a type word (NONE or CMD) followed by a command in shell or JSON form. */
function parseHealthcheckArguments(ctx: LineContext, parsed: ParsedLine, text: string, offset: number): void {
  const typeMatch = /^[^\t\n\v\f\r \u0085\u00a0]+/.exec(text);
  if (!typeMatch) return;
  const typeWord: Word = { text: typeMatch[0], start: offset, end: offset + typeMatch[0].length };
  const rest = text.slice(typeMatch[0].length);
  const restLead = LEADING_SPACE.exec(rest);
  const commandOffset = typeWord.end + (restLead ? restLead[0].length : 0);
  const commandText = ctx.text.slice(commandOffset, offset + text.length);
  const json = parseJsonForm(ctx, "healthcheck", commandText, commandOffset);
  const command = json ? json.words : wholeText(commandText, commandOffset);
  parsed.instruction.json = json !== undefined;
  parsed.offsets.argWords = [typeWord, ...command];
  parsed.instruction.args = parsed.offsets.argWords.map((word) => word.text);
}

function failUnknownInstruction(ctx: LineContext, keyword: Word): never {
  if (keyword.text === "") ctx.fail("expected an instruction", keyword.start, keyword.start + 1);
  const suggestion = closestMatch(keyword.text.toLowerCase(), KEYWORDS);
  const hint = suggestion
    ? `did you mean ${suggestion.toUpperCase()}?`
    : `instructions are ${KEYWORDS.map((k) => k.toUpperCase()).join(", ")}`;
  ctx.fail(`unknown instruction ${keyword.text}`, keyword.start, keyword.end, hint);
}

