# The structure of a Dockerfile: ARGs may come before the first FROM; every
# other instruction belongs to the stage opened by the FROM before it. Tokens
# come from instruction-lexer.ts: `from`, and runs of other instructions
# (`args` when only ARGs, `body` otherwise). Instruction syntax itself is the
# line parser's (instruction-line.ts), whose rules are Docker's procedural ones.
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
  /** Index of the stage's FROM instruction. */
  from: number;
}
export interface FileShape {
  stages: List<StageShape> | null;
}
const index = (token: InstructionToken): number => token.index;
const cons = <T>(tail: List<T> | null, head: T): List<T> => ({ head, tail });
%}
@lexer instructionLexer

dockerfile -> globalArgs stages         {% ([, stages]): FileShape => ({ stages }) %}
globalArgs -> null | %args
stages     -> null                       {% () => null %}
            | stages stage               {% ([list, stage]) => cons(list, stage) %}
stage      -> %from stageBody            {% ([from]): StageShape => ({ from: index(from) }) %}
stageBody  -> null | %args | %body
