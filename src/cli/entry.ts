import { main } from "./main.ts";

/**
 * Exits as soon as the command is done and its output is flushed, instead of waiting for
 * idle handles (a registry connection kept alive, a timer) to wind down on their own.
 */
main(process.argv.slice(2)).then(
  (code) => exitAfterFlush(code),
  (error: unknown) => {
    process.stderr.write(`tsbuild: internal error: ${String(error)}\n`);
    exitAfterFlush(70);
  },
);

function exitAfterFlush(code: number): void {
  process.exitCode = code;
  // A write's callback runs once everything queued before it has been handed to the OS (pipes are asynchronous).
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}
