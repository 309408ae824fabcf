import { parseDockerfile, type Dockerfile, type Instruction } from "../../parser/index.ts";
import { readTextInput } from "../read-input.ts";
import type { ParseArgs } from "./parse.ts";

export async function runParse(args: ParseArgs): Promise<void> {
  const text = await readTextInput(args.file, "Dockerfile");
  const dockerfile = parseDockerfile(text, { file: args.file === "-" ? "<stdin>" : args.file });
  for (const warning of dockerfile.warnings) {
    const { line, column } = warning.span.start;
    process.stderr.write(`warning: ${dockerfile.file}:${line}:${column}: ${warning.message} [${warning.code}]\n`);
  }
  process.stdout.write(args.format === "json" ? JSON.stringify(dockerfile, null, 2) + "\n" : formatText(dockerfile));
}

function formatText(dockerfile: Dockerfile): string {
  const lines: string[] = [];
  const stageAt = new Map(dockerfile.stages.map((stage, index) => [stage.from, { stage, index }]));
  lines.push(`${dockerfile.file}: ${dockerfile.instructions.length} instructions, ${dockerfile.stages.length} stages`);
  for (const directive of dockerfile.directives) lines.push(`# ${directive.name}=${directive.value}`);
  dockerfile.instructions.forEach((instruction, index) => {
    const entry = stageAt.get(index);
    if (entry) lines.push(`stage ${entry.index}${entry.stage.name ? ` "${entry.stage.name}"` : ""} from ${entry.stage.base}`);
    lines.push(formatInstruction(instruction, "  "));
  });
  return lines.join("\n") + "\n";
}

function formatInstruction(instruction: Instruction, indent: string): string {
  const { line, column } = instruction.span.start;
  const parts = [instruction.keyword.toUpperCase(), ...instruction.flags.map((flag) => flag.raw)];
  if (instruction.pairs) parts.push(...instruction.pairs.map((pair) => (pair.value === undefined ? pair.key : `${pair.key}=${pair.value}`)));
  else if (instruction.trigger) parts.push("→");
  else if (instruction.json && instruction.keyword === "healthcheck") parts.push(instruction.args[0] ?? "", JSON.stringify(instruction.args.slice(1)));
  else if (instruction.json) parts.push(JSON.stringify(instruction.args));
  else parts.push(...instruction.args);
  let text = `${indent}${`${line}:${column}`.padEnd(8)}${parts.join(" ")}`;
  if (instruction.trigger) text += "\n" + formatInstruction(instruction.trigger, indent + "    ");
  for (const heredoc of instruction.heredocs) {
    const lineCount = heredoc.content === "" ? 0 : heredoc.content.split("\n").length - (heredoc.content.endsWith("\n") ? 1 : 0);
    text += `\n${indent}        <<${heredoc.chomp ? "-" : ""}${heredoc.name} (${lineCount} line${lineCount === 1 ? "" : "s"}${heredoc.expand ? "" : ", literal"})`;
  }
  return text;
}
