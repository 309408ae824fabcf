/**
 * A build step failed for a reason the user can act on (a missing source, an
 * unknown user in --chown, an unsupported source). Carries the step so the
 * CLI can point at it, and a hint.
 */
export class BuildStepError extends Error {
  override readonly name = "BuildStepError";
  readonly step: string | undefined;
  readonly location: { file: string; line: number } | undefined;
  readonly hint: string | undefined;

  constructor(message: string, options: { step?: string; location?: { file: string; line: number }; hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.step = options.step;
    this.location = options.location;
    this.hint = options.hint;
  }

  /** The same error, attributed to a step. */
  at(step: string, location: { file: string; line: number } | undefined): BuildStepError {
    return new BuildStepError(this.message, { step, ...(location ? { location } : {}), ...(this.hint ? { hint: this.hint } : {}), cause: this.cause });
  }
}

/** The build was cancelled (Ctrl-C). */
export class BuildCancelledError extends Error {
  override readonly name = "BuildCancelledError";
  constructor() {
    super("build cancelled");
  }
}
