import nearley from "nearley";
import type { Directive, Dockerfile, Heredoc, Instruction, Stage, Warning } from "./ast.ts";
import { readDirective, type DirectiveState } from "./directives.ts";
import { DockerfileSyntaxError } from "./errors.ts";
import grammar, { type FileShape, type List } from "./file-grammar.generated.ts";
import type { InstructionToken } from "./instruction-lexer.ts";
import { HEREDOC_KEYWORDS, heredocsInLine } from "./heredoc.ts";
import { parseInstructionLine, type LineContext, type ParsedLine } from "./instruction-line.ts";
import { ShellExpansionError } from "./shell-words.ts";
import { OffsetMap, type Span } from "./span.ts";
import { validateInstruction, type ValidationContext } from "./validate.ts";
import { skipSpaceForward, type EscapeChar } from "./words.ts";

export interface ParseOptions {
  /** The name used in error messages and spans (default "Dockerfile"). */
  file?: string;
}

const BOM = "\ufeff";
const compiledGrammar = nearley.Grammar.fromCompiled(grammar);

/**
 * Parses Dockerfile text. Returns the parse tree or throws a
 * DockerfileSyntaxError that says what is wrong, where, and what to do;
 * no other exception escapes for any input.
 */
export function parseDockerfile(text: string, options: ParseOptions = {}): Dockerfile {
  const file = options.file ?? "Dockerfile";
  const source = new SourceLines(text.startsWith(BOM) ? text.slice(1) : text);
  const directiveState: DirectiveState = { done: false, seen: new Set(), escape: "\\" };
  const directives: Directive[] = [];
  const warnings: Warning[] = [];
  const instructions: Instruction[] = [];
  let comments: string[] = [];

  const failOnLine = (line: number, column: number, message: string, hint?: string): never => {
    const lineText = source.content(line - 1);
    throw new DockerfileSyntaxError({
      message,
      file,
      span: { start: { line, column }, end: { line, column: lineText.length + 1 } },
      sourceLine: lineText,
      hint,
    });
  };

  while (source.hasNext()) {
    const lineIndex = source.position;
    const content = source.next();
    const directive = readDirective(directiveState, content, lineIndex + 1, failOnLine);
    if (directive) directives.push(directive);

    const indent = skipSpaceForward(content, 0);
    const trimmed = indent === 0 ? content : content.slice(indent);
    if (trimmed.startsWith("#")) {
      const comment = trimmed.slice(1).trim();
      comments = comment === "" ? [] : [...comments, comment];
      continue;
    }
    const logical = assembleLogicalLine(source, trimmed, { line: lineIndex + 1, column: indent + 1 }, directiveState.escape, warnings, file);
    if (logical === undefined) continue;

    const ctx = new LineCursor(logical.text, logical.map, directiveState.escape, source, file, warnings);
    const parsed = parseInstructionLine(ctx);
    parsed.instruction.comments = comments;
    comments = [];
    readHeredocs(parsed, ctx, source);
    validateInstruction(ctx, parsed);
    instructions.push(parsed.instruction);
  }

  if (instructions.length === 0) {
    failOnLine(Math.max(1, source.length), 1, "the Dockerfile has no instructions", "start with FROM <image>, e.g. FROM debian:12");
  }
  const stages = buildStages(instructions, file, source);
  return { file, escape: directiveState.escape, directives, instructions, stages, warnings };
}

/** The file's physical lines, without their line endings. */
class SourceLines {
  private readonly lines: string[];
  private readonly endsWithNewline: boolean;
  position = 0;

  constructor(text: string) {
    this.endsWithNewline = text.endsWith("\n");
    this.lines = text.split("\n");
    if (this.endsWithNewline) this.lines.pop();
  }

  get length(): number {
    return this.lines.length;
  }

  hasNext(): boolean {
    return this.position < this.lines.length;
  }

  /** The next line without its line ending (`\n` or `\r\n`). */
  next(): string {
    return this.content(this.position++);
  }

  content(index: number): string {
    const line = this.lines[index] ?? "";
    return line.endsWith("\r") ? line.slice(0, -1) : line;
  }

  /** The line exactly as in the file, with its line ending (heredoc bodies keep them). */
  raw(index: number): string {
    const line = this.lines[index] ?? "";
    return index < this.lines.length - 1 || this.endsWithNewline ? line + "\n" : line;
  }
}

interface LogicalLine {
  text: string;
  map: OffsetMap;
  /** 1-based number of the last physical line of the logical line. */
  endLine: number;
}

/**
 * Joins a line with its continuation lines: the escape character at the end
 * of a line (trailing spaces allowed) continues it; comment lines inside are
 * dropped; empty continuation lines are dropped with a warning, as in Docker.
 */
function assembleLogicalLine(
  source: SourceLines,
  first: string,
  firstPosition: { line: number; column: number },
  escape: EscapeChar,
  warnings: Warning[],
  file: string,
): LogicalLine | undefined {
  const continuation = escape === "\\" ? /\\[ \t]*$/ : /`[ \t]*$/;
  const map = new OffsetMap();
  map.add(0, firstPosition);
  let match = continuation.exec(first);
  let text = match ? first.slice(0, match.index) : first;
  if (!match && text === "") return undefined;
  let endLine = firstPosition.line;
  let emptyLine: number | undefined;
  while (match && source.hasNext()) {
    const lineNumber = source.position + 1;
    const line = source.next();
    endLine = lineNumber;
    const indent = skipSpaceForward(line, 0);
    if (line.charCodeAt(indent) === 0x23 /* # */) continue;
    if (indent === line.length) {
      emptyLine ??= lineNumber;
      continue;
    }
    match = continuation.exec(line);
    map.add(text.length, { line: lineNumber, column: 1 });
    text += match ? line.slice(0, match.index) : line;
  }
  if (emptyLine !== undefined) {
    warnings.push({
      code: "NoEmptyContinuation",
      message: `${file}:${emptyLine}: empty continuation line: remove it, or end the instruction on the line before`,
      span: { start: { line: emptyLine, column: 1 }, end: { line: emptyLine, column: 1 } },
    });
  }
  if (text.trim() === "") return undefined;
  return { text, map, endLine };
}

/**
 * One logical line's view for the line parser and the checks: maps offsets in
 * the joined text back to the file for errors. A class, not closures: one
 * allocation per line on the hot path.
 */
class LineCursor implements LineContext, ValidationContext {
  constructor(
    readonly text: string,
    readonly map: OffsetMap,
    readonly escape: EscapeChar,
    private readonly source: SourceLines,
    private readonly file: string,
    private readonly warnings: Warning[],
  ) {}

  fail(message: string, start: number, end: number, hint?: string): never {
    return this.failAt(message, this.spanOf(start, Math.max(end, start)), hint);
  }

  failAt(message: string, span: Span, hint?: string): never {
    throw new DockerfileSyntaxError({ message, file: this.file, span, sourceLine: this.source.content(span.start.line - 1), hint });
  }

  warn(warning: Warning): void {
    this.warnings.push(warning);
  }

  spanOf(start: number, end: number): Span {
    return this.map.spanOf(start, end);
  }
}

/** Reads the bodies of the heredocs the instruction opens, from the lines after it. */
function readHeredocs(parsed: ParsedLine, ctx: LineContext, source: SourceLines): void {
  const target = parsed.trigger ?? parsed;
  const { instruction } = target;
  if (!HEREDOC_KEYWORDS.has(instruction.keyword) || instruction.json) return;
  let opened;
  try {
    opened = heredocsInLine(ctx.text);
  } catch (error) {
    if (error instanceof ShellExpansionError) ctx.fail(`invalid heredoc: ${error.message}`, 0, ctx.text.length);
    throw error;
  }
  if (opened.length === 0) return;
  const heredocs: Heredoc[] = [];
  for (const heredoc of opened) {
    const bodyStart = source.position;
    let content = "";
    let terminated = false;
    while (source.hasNext()) {
      const index = source.position;
      const line = source.next();
      const candidate = heredoc.chomp ? line.replace(/^\t+/, "") : line;
      if (candidate === heredoc.name) {
        terminated = true;
        break;
      }
      content += source.raw(index);
    }
    if (!terminated) {
      ctx.fail(
        `heredoc <<${heredoc.name} is not terminated`,
        0,
        ctx.text.length,
        `end it with a line containing only ${heredoc.name}`,
      );
    }
    const endLine = source.position;
    heredocs.push({
      ...heredoc,
      content,
      span: { start: { line: bodyStart + 1, column: 1 }, end: { line: endLine, column: heredoc.name.length + 1 } },
    });
  }
  instruction.heredocs = heredocs;
  if (heredocs.length > 0) {
    const last = heredocs[heredocs.length - 1] as Heredoc;
    parsed.instruction.span = { start: parsed.instruction.span.start, end: last.span.end };
    if (parsed.trigger) parsed.trigger.instruction.span = { start: instruction.span.start, end: last.span.end };
  }
}

/** Groups instructions into stages with the file grammar. */
function buildStages(instructions: Instruction[], file: string, source: SourceLines): Stage[] {
  const parser = new nearley.Parser(compiledGrammar);
  try {
    parser.feed(instructions.map((instruction) => instruction.keyword).join("\n"));
  } catch (error) {
    const index = (error as { token?: InstructionToken }).token?.firstStep ?? 0;
    const instruction = instructions[index] as Instruction;
    const keyword = instruction.keyword.toUpperCase();
    throw new DockerfileSyntaxError({
      message: `${keyword} before the first FROM: only ARG may come before FROM`,
      file,
      span: instruction.span,
      sourceLine: source.content(instruction.span.start.line - 1),
      hint: "start the stage with FROM <image> above this line",
    });
  }
  const shape = parser.results[0] as FileShape | undefined;
  const stageShapes = shape ? listToArray(shape.stages) : [];
  if (stageShapes.length === 0) {
    const last = instructions[instructions.length - 1] as Instruction;
    throw new DockerfileSyntaxError({
      message: "the Dockerfile has no FROM: there is no stage to build",
      file,
      span: last.span,
      sourceLine: source.content(last.span.start.line - 1),
      hint: "add FROM <image> after the ARG lines",
    });
  }
  return stageShapes.map((stage, position) => {
    const from = instructions[stage.from] as Instruction;
    const named = from.args.length === 3 ? (from.args[2] as string).toLowerCase() : undefined;
    const next = stageShapes[position + 1];
    return {
      name: named,
      base: from.args[0] as string,
      platform: from.flags.find((flag) => flag.name === "platform")?.value,
      from: stage.from,
      end: next ? next.from : instructions.length,
    };
  });
}

function listToArray<T>(list: List<T> | null): T[] {
  const items: T[] = [];
  for (let cell = list; cell; cell = cell.tail) items.push(cell.head);
  return items.reverse();
}
