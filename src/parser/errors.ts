import type { Position, Span } from "./span.ts";

/**
 * A mistake in a Dockerfile: what is wrong, where, and what to do about it.
 * The parser only ever throws this type for bad input.
 */
export class DockerfileSyntaxError extends Error {
  override readonly name = "DockerfileSyntaxError";
  readonly file: string;
  readonly span: Span;
  /** The offending source line, for the caret display. */
  readonly sourceLine: string;
  /** A suggestion of what to do, if one is known. */
  readonly hint: string | undefined;

  constructor(options: { message: string; file: string; span: Span; sourceLine: string; hint?: string | undefined }) {
    super(options.message);
    this.file = options.file;
    this.span = options.span;
    this.sourceLine = options.sourceLine;
    this.hint = options.hint;
  }

  get position(): Position {
    return this.span.start;
  }

  /** `file:line:col: message`, the line, a caret under the problem and the hint. */
  format(): string {
    const { line, column } = this.span.start;
    const gutter = String(line);
    const caretWidth =
      this.span.end.line === line ? Math.max(1, this.span.end.column - column) : Math.max(1, this.sourceLine.length - column + 1);
    const shownLine = this.sourceLine.length > 200 ? this.sourceLine.slice(0, 200) + "…" : this.sourceLine;
    const caretColumn = Math.min(column, shownLine.length + 1);
    // Keep tabs so the caret lines up under tab-indented text.
    const caretPad = shownLine.slice(0, caretColumn - 1).replace(/[^\t]/g, " ");
    const lines = [
      `${this.file}:${line}:${column}: ${this.message}`,
      ` ${gutter} | ${printable(shownLine)}`,
      ` ${" ".repeat(gutter.length)} | ${caretPad}${"^".repeat(Math.min(caretWidth, 80))}`,
    ];
    if (this.hint) lines.push(`hint: ${this.hint}`);
    return lines.join("\n");
  }
}

/** Tabs kept (for caret alignment), other control characters made visible. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "?");
}
