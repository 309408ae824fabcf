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
