import type { Argv, ArgumentsCamelCase } from "yargs";

interface ParseArgs {
  file: string;
  format: "json" | "text";
}

export const parseCommand = {
  command: "parse",
  describe: "Parse a Dockerfile and print its syntax tree",
  builder: (yargs: Argv) =>
    yargs
      .option("file", { alias: "f", type: "string", default: "Dockerfile", describe: "The Dockerfile to parse (- for standard input)" })
      .option("format", { choices: ["json", "text"] as const, default: "text" as const, describe: "Output format (json schema: docs/parse-ast.md)" })
      .example("$0 parse -f app/Dockerfile --format json", "Print the parse tree as JSON"),
  handler: async (args: ArgumentsCamelCase<ParseArgs>) => {
    const { runParse } = await import("./parse-run.ts");
    await runParse(args);
  },
};

export type { ParseArgs };
