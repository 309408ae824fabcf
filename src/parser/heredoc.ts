import { ShellExpansionError, expandWords } from "./shell-words.ts";

/** Which heredocs a line opens: `<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`, several per line. */

export interface HeredocWord {
  name: string;
  expand: boolean;
  chomp: boolean;
  fd: number;
}

const NO_VARIABLES = new Map<string, string>();
const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;

/** The instructions whose lines may open heredocs (when not in JSON form). */
export const HEREDOC_KEYWORDS: ReadonlySet<string> = new Set(["run", "copy", "add"]);

/** The heredocs opened by a logical line, in order. */
export function heredocsInLine(line: string): HeredocWord[] {
  if (!line.includes("<<")) return [];
  let words: string[];
  try {
    words = expandWords(line, NO_VARIABLES, { rawQuotes: true, rawEscapes: true });
  } catch (error) {
    // A line the shell lexer cannot split opens no heredoc; Docker ignores the error too.
    if (error instanceof ShellExpansionError) return [];
    throw error;
  }
  const heredocs: HeredocWord[] = [];
  for (const word of words) {
    const heredoc = parseHeredocWord(word);
    if (heredoc) heredocs.push(heredoc);
  }
  return heredocs;
}

/**
 * Reads one heredoc-opening word. The body is expanded unless some part of
 * the delimiter is quoted, which shows as a different count of quote
 * characters with and without quote removal.
 */
export function parseHeredocWord(word: string): HeredocWord | undefined {
  const match = HEREDOC_WORD.exec(word);
  if (!match) return undefined;
  const [, fd = "", dash = "", rest = ""] = match;
  if (rest === "") return undefined;
  // A ShellExpansionError here (e.g. an unterminated quote) is the caller's to report.
  const unquoted = expandWords(rest, NO_VARIABLES, { skipUnsetEnv: true });
  const raw = expandWords(rest, NO_VARIABLES, { skipUnsetEnv: true, rawQuotes: true });
  const [name, rawName] = [unquoted[0], raw[0]];
  if (unquoted.length !== 1 || raw.length !== 1 || name === undefined || rawName === undefined) return undefined;
  return {
    name,
    expand: countQuotes(name) === countQuotes(rawName),
    chomp: dash === "-",
    fd: fd === "" ? 0 : Number.parseInt(fd, 10),
  };
}

function countQuotes(text: string): number {
  let count = 0;
  for (const char of text) if (char === "'" || char === '"') count++;
  return count;
}

/** `<<-` bodies lose their leading tabs. */
export function chompHeredocContent(content: string): string {
  return content.replace(/^\t+/gm, "");
}
