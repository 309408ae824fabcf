# The structure of a Dockerfile, over one token per instruction: `from`, `arg`,
# or `step` for every other instruction (the lexer classifies keywords the way a
# lexer classifies identifiers). ARGs may come before the first FROM; every
# other instruction belongs to the stage opened by the FROM before it. Instruction syntax itself is handled by
# the line parser (instruction-line.ts), whose rules are Docker's procedural ones.
@preprocessor typescript
@{%
import { instructionLexer, type InstructionToken } from "./instruction-lexer.ts";

/**
 * Lists are built as cons cells: Earley completes a list rule after every
 * token, so copying arrays there (nearley's `:*`) would be quadratic.
 */
export interface List<T> {
  head: T;
  tail: List<T> | null;
}
export interface StageShape {
  from: number;
  body: List<number> | null;
}
export interface FileShape {
  globalArgs: List<number> | null;
  stages: List<StageShape> | null;
}
const index = (token: InstructionToken): number => token.index;
const cons = <T>(tail: List<T> | null, head: T): List<T> => ({ head, tail });
%}
@lexer instructionLexer

dockerfile -> globalArgs stages        {% ([globalArgs, stages]): FileShape => ({ globalArgs, stages }) %}
globalArgs -> null                       {% () => null %}
            | globalArgs %arg            {% ([list, token]) => cons(list, index(token)) %}
stages     -> null                       {% () => null %}
            | stages stage               {% ([list, stage]) => cons(list, stage) %}
stage      -> %from stageBody            {% ([from, body]): StageShape => ({ from: index(from), body }) %}
stageBody  -> null                       {% () => null %}
            | stageBody (%arg | %step)   {% ([list, [token]]) => cons(list, index(token)) %}
