/**
 * A mistake the user can fix (a missing file, a bad flag value, an unknown
 * stage). Every module throws it for bad input; the CLI prints it without a
 * stack trace: the message says what is wrong and where, the hint what to do.
 */
export class UserError extends Error {
  override readonly name: string = "UserError";
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.hint = hint;
  }
}

/** A UserError with a stable `code` that callers can branch on. */
export class CodedUserError<Code extends string> extends UserError {
  readonly code: Code;

  constructor(code: Code, message: string, options: { hint?: string | undefined; cause?: unknown } = {}) {
    super(message, options.hint);
    this.code = code;
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

/** The errno code of a Node system error ("ENOENT", "EACCES"…), if it is one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "string") return error.code;
  return undefined;
}
