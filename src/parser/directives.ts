import type { Directive, DirectiveName } from "./ast.ts";
import type { EscapeChar } from "./words.ts";

/**
 * Parser directives (`# syntax=`, `# escape=`, `# check=`): only at the very
 * top of the file. The first line that is not a known directive (an
 * instruction, a blank line, any other comment) ends them; each may appear once.
 */

export interface DirectiveState {
  done: boolean;
  seen: Set<DirectiveName>;
  escape: EscapeChar;
}

type FailOnLine = (line: number, column: number, message: string, hint?: string) => never;

/** Go's RE2 `\s` is ASCII whitespace without \v; directives use it. */
const DIRECTIVE = /^[\t\n\f\r ]*#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;
const NAMES: ReadonlySet<string> = new Set<DirectiveName>(["syntax", "escape", "check"]);

export function readDirective(state: DirectiveState, line: string, lineNumber: number, fail: FailOnLine): Directive | undefined {
  if (state.done) return undefined;
  const match = DIRECTIVE.exec(line);
  const name = match?.[1]?.toLowerCase();
  if (!match || name === undefined || !NAMES.has(name)) {
    state.done = true;
    return undefined;
  }
  const directive = name as DirectiveName;
  const value = match[2] as string;
  const column = line.indexOf(match[1] as string) + 1;
  if (state.seen.has(directive)) {
    fail(lineNumber, column, `the ${directive} directive is given twice`, `keep one "# ${directive}=" line`);
  }
  state.seen.add(directive);
  if (directive === "escape") {
    if (value !== "\\" && value !== "`") {
      fail(lineNumber, column, `invalid escape character "${value}"`, "the escape directive takes \\ or ` (backtick)");
    }
    state.escape = value;
  }
  if (directive === "check") validateCheck(value, lineNumber, column, fail);
  const end = line.length + 1;
  return { name: directive, value, span: { start: { line: lineNumber, column }, end: { line: lineNumber, column: end } } };
}

/** `# check=skip=Rule1,Rule2;error=true;experimental=all` */
function validateCheck(value: string, line: number, column: number, fail: FailOnLine): void {
  for (const part of value.split(";")) {
    const [key = "", option] = part.split("=", 2).map((piece) => piece.trim());
    if (!["skip", "error", "experimental"].includes(key.toLowerCase())) {
      fail(line, column, `unknown option "${key}" in the check directive`, "the check directive takes skip=, error= and experimental=");
    }
    if (option === undefined || option === "") fail(line, column, `the check option "${key}" needs a value`);
    if (key.toLowerCase() === "error" && !["true", "false"].includes(option.toLowerCase())) {
      fail(line, column, `check option error takes true or false, not "${option}"`);
    }
  }
}
