import type { Argv } from "yargs";

export interface PruneArgs {
  all: boolean;
  olderThan?: string;
  keepStorage?: string;
  cacheMounts: boolean;
  root?: string;
}

export const pruneCommand = {
  command: "prune",
  describe: "Remove build cache (and blobs no stored image name reaches)",
  builder: (yargs: Argv) =>
    yargs
      .option("all", { alias: "a", type: "boolean", default: false, describe: "Remove every cached result" })
      .option("older-than", { type: "string", describe: "Only remove results unused for this long (e.g. 24h, 30m, 7d)" })
      .option("cache-mounts", { type: "boolean", default: false, describe: "Also empty RUN --mount=type=cache directories (none in use is touched)" })
      .option("keep-storage", { type: "string", describe: "Keep the most recently used results up to this size (e.g. 5GB, 512MB)" })
      .example("$0 prune --older-than 72h", "Drop what no build used in three days"),
  handler: async (args: object) => {
    const { runPrune } = await import("./maintenance-run.ts");
    await runPrune(args as PruneArgs);
  },
};

export const duCommand = {
  command: "du",
  describe: "Show the disk usage of the build cache and the image store",
  builder: (yargs: Argv) => yargs,
  handler: async (args: object) => {
    const { runDu } = await import("./maintenance-run.ts");
    await runDu(args as { root?: string });
  },
};
