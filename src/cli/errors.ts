/** Exit codes of every tsbuild command (docs/cli.md lists them). */
export const EXIT = {
  ok: 0,
  /** Bad input: a Dockerfile mistake, a missing file, a bad reference. */
  userError: 1,
  /** Bad command line: unknown flag, missing argument. */
  usage: 2,
  /** A bug in tsbuild: the message asks for a report. */
  internal: 70,
  /** Interrupted by Ctrl-C (128 + SIGINT). */
  interrupted: 130,
} as const;

export { UserError } from "../user-error.ts";
