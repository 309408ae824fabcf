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

/**
 * A mistake the user can fix. Printed without a stack trace: the message says
 * what is wrong and where, the hint what to do.
 */
export class UserError extends Error {
  override readonly name = "UserError";
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.hint = hint;
  }
}
