import { UserError } from "../user-error.ts";

/**
 * A build step failed for a reason the user can act on (a missing source, an
 * unknown user in --chown, an unsupported source). Carries the step so the
 * CLI can point at it, and a hint.
 */
export class BuildStepError extends UserError {
  override readonly name = "BuildStepError";
  readonly step: string | undefined;
  readonly location: { file: string; line: number } | undefined;

  constructor(message: string, options: { step?: string; location?: { file: string; line: number }; hint?: string; cause?: unknown } = {}) {
    super(message, options.hint);
    if (options.cause !== undefined) this.cause = options.cause;
    this.step = options.step;
    this.location = options.location;
  }
}

/** The build was cancelled (Ctrl-C). */
export class BuildCancelledError extends Error {
  override readonly name = "BuildCancelledError";
  constructor() {
    super("build cancelled");
  }
}
