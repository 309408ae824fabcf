import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { DockerfileSyntaxError } from "../parser/errors.ts";
import { BuildStepError } from "../solver/errors.ts";
import { buildCommand } from "./commands/build.ts";
import { imageCommands } from "./commands/images.ts";
import { registryOptionsOf } from "./registry-options.ts";
import { parseCommand } from "./commands/parse.ts";
import { duCommand, pruneCommand } from "./commands/prune.ts";
import { EXIT, UserError } from "./errors.ts";
import { VERSION } from "./version.ts";

export async function main(argv: string[]): Promise<number> {
  const cli = registryOptionsOf(yargs(hideBin(["node", "tsbuild", ...argv])))
    .scriptName("tsbuild")
    // --no-cache is an option of its own (as in docker build), not the negation of a --cache.
    .parserConfiguration({ "boolean-negation": false })
    .usage("$0 <command> [options]\n\nBuild container images from Dockerfiles, and run them.")
    .option("root", {
      type: "string",
      global: true,
      describe: "State directory (default: $TSBUILD_ROOT or /var/lib/tsbuild)",
    })
    .command(buildCommand)
    .command(imageCommands.pull)
    .command(imageCommands.push)
    .command(imageCommands.images)
    .command(imageCommands.tag)
    .command(imageCommands.rmi)
    .command(imageCommands.inspect)
    .command(imageCommands.history)
    .command(imageCommands.save)
    .command(imageCommands.load)
    .command(imageCommands.login)
    .command(imageCommands.logout)
    .command(parseCommand)
    .command(pruneCommand)
    .command(duCommand)
    .demandCommand(1, "Name a command: tsbuild <command> (see tsbuild --help)")
    .strict()
    .version(VERSION)
    .help()
    .alias("h", "help")
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .fail((message, error) => {
      // Throwing stops yargs from running the command after a usage error.
      throw error ?? new UsageError(message);
    });
  skipHelpPrerender(cli);
  try {
    await cli.parseAsync();
    // A command's handler sets process.exitCode when it ends with a non-zero status.
    return Number(process.exitCode ?? EXIT.ok);
  } catch (error) {
    return reportError(error);
  }
}

class UsageError extends Error {}

/**
 * yargs renders the whole help text before it runs a command, in case the command shows it
 * later; ours never do (.fail above reports a usage error without help), and the rendering
 * (string widths of every line) costs ~40 ms of each start. `--help` still renders it.
 */
function skipHelpPrerender(cli: object): void {
  const internal = (cli as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } }).getInternalMethods?.();
  const usage = internal?.getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === "function") usage.cacheHelpMessage = () => {};
}

function reportError(error: unknown): number {
  // Ctrl-C during a transfer (pull, push, login): the operation stops with the signal's AbortError.
  if (error instanceof Error && error.name === "AbortError") {
    process.stderr.write("interrupted\n");
    return EXIT.interrupted;
  }
  if (error instanceof UsageError) {
    process.stderr.write(`tsbuild: ${error.message}\nRun "tsbuild --help" for usage.\n`);
    return EXIT.usage;
  }
  if (error instanceof DockerfileSyntaxError) {
    process.stderr.write(`error: ${error.format()}\n`);
    return EXIT.userError;
  }
  if (error instanceof BuildStepError) {
    const where = error.location ? ` (${error.location.file}:${error.location.line})` : "";
    process.stderr.write(`error: ${error.step ? `${error.step}${where}: ` : ""}${error.message}\n${error.hint ? `hint: ${error.hint}\n` : ""}`);
    return EXIT.userError;
  }
  if (error instanceof UserError) {
    process.stderr.write(`error: ${error.message}\n${error.hint ? `hint: ${error.hint}\n` : ""}`);
    return EXIT.userError;
  }
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`tsbuild: internal error (please report it with the command you ran):\n${detail}\n`);
  return EXIT.internal;
}
