/**
 * The token source of the file grammar. Its input is the instructions'
 * keywords, one per line. A FROM is a `from` token; a run of other
 * instructions between two FROMs is one token, `args` when the run holds only
 * ARGs and `body` otherwise (a lexer groups what the grammar need not tell
 * apart, as it would group the characters of a word).
 */

export interface InstructionToken {
  type: "from" | "args" | "body";
  value: string;
  text: string;
  /** Index of the token's first instruction. */
  index: number;
  /** Index of the first instruction that is not an ARG (for `body` tokens). */
  firstStep: number;
  offset: number;
  lineBreaks: number;
  line: number;
  col: number;
}

const TOKEN_TYPES: ReadonlySet<string> = new Set(["from", "args", "body"]);

class InstructionLexer {
  private keywords: string[] = [];
  private position = 0;

  reset(chunk: string): void {
    this.keywords = chunk === "" ? [] : chunk.split("\n");
    this.position = 0;
  }

  next(): InstructionToken | undefined {
    const start = this.position;
    const first = this.keywords[start];
    if (first === undefined) return undefined;
    if (first === "from") {
      this.position++;
      return this.token("from", start, start);
    }
    let firstStep = -1;
    while (this.position < this.keywords.length && this.keywords[this.position] !== "from") {
      if (firstStep < 0 && this.keywords[this.position] !== "arg") firstStep = this.position;
      this.position++;
    }
    return this.token(firstStep < 0 ? "args" : "body", start, firstStep);
  }

  private token(type: InstructionToken["type"], index: number, firstStep: number): InstructionToken {
    return { type, value: type, text: type, index, firstStep, offset: index, lineBreaks: 0, line: index + 1, col: 1 };
  }

  save(): { line: number } {
    return { line: this.position };
  }

  formatError(token: InstructionToken): string {
    return `unexpected ${token.type} at instruction ${token.index + 1}`;
  }

  has(type: string): boolean {
    return TOKEN_TYPES.has(type);
  }
}

export const instructionLexer = new InstructionLexer();
