# The structure of a Dockerfile, over one token per instruction (its keyword):
# ARGs may come before the first FROM; every other instruction belongs to the
# stage opened by the FROM before it. Instruction syntax itself is handled by
# the line parser (instruction-line.ts), whose rules are Docker's procedural ones.
@preprocessor typescript
@{%
import { instructionLexer, type InstructionToken } from "./instruction-lexer.ts";

export interface StageShape {
  from: number;
  body: number[];
}
export interface FileShape {
  globalArgs: number[];
  stages: StageShape[];
}
const index = (token: InstructionToken): number => token.index;
%}
@lexer instructionLexer

dockerfile -> globalArg:* stage:*           {% ([globalArgs, stages]): FileShape => ({ globalArgs, stages }) %}
globalArg  -> %arg                          {% ([token]) => index(token) %}
stage      -> %from stageInstruction:*      {% ([from, body]): StageShape => ({ from: index(from), body }) %}
stageInstruction -> (%add | %arg | %cmd | %copy | %entrypoint | %env | %expose | %healthcheck | %label
                   | %maintainer | %onbuild | %run | %shell | %stopsignal | %user | %volume | %workdir)
                                            {% ([[token]]) => index(token) %}
