/**
 * The token source of the file grammar: the input is the instructions'
 * keywords, one per line; each token carries its instruction's index and is
 * of type `from`, `arg` or `step` (any other instruction).
 */

export interface InstructionToken {
  type: string;
  value: string;
  text: string;
  index: number;
  offset: number;
  lineBreaks: number;
  line: number;
  col: number;
}

const TOKEN_TYPES: ReadonlySet<string> = new Set(["from", "arg", "step"]);

class InstructionLexer {
  private keywords: string[] = [];
  private position = 0;

  reset(chunk: string): void {
    this.keywords = chunk === "" ? [] : chunk.split("\n");
    this.position = 0;
  }

  next(): InstructionToken | undefined {
    const keyword = this.keywords[this.position];
    if (keyword === undefined) return undefined;
    const index = this.position++;
    const type = keyword === "from" || keyword === "arg" ? keyword : "step";
    return { type, value: keyword, text: keyword, index, offset: index, lineBreaks: 0, line: index + 1, col: 1 };
  }

  save(): { line: number } {
    return { line: this.position };
  }

  formatError(token: InstructionToken): string {
    return `unexpected ${token.value.toUpperCase()} (instruction ${token.index + 1})`;
  }

  has(type: string): boolean {
    return TOKEN_TYPES.has(type);
  }
}

export const instructionLexer = new InstructionLexer();
