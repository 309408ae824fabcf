import { UserError } from "../user-error.ts";

/** What went wrong around a sandboxed process; stable strings for callers and tests. */
export type SandboxErrorCode =
  /** The spec is malformed (relative path, empty command, NUL byte...). */
  | "INVALID_SPEC"
  /** native/build/tsbuild-sandbox has not been compiled. */
  | "HELPER_NOT_BUILT"
  /** The OCI runtime (runc, crun) is not installed. */
  | "RUNTIME_NOT_FOUND"
  /** `USER name[:group]` does not resolve against the root filesystem. */
  | "USER_NOT_FOUND"
  /** The helper or runtime could not be started or failed outside the command. */
  | "START_FAILED";

export class SandboxError extends UserError {
  override readonly name = "SandboxError";
  readonly code: SandboxErrorCode;

  constructor(code: SandboxErrorCode, message: string, options: { hint?: string | undefined; cause?: unknown } = {}) {
    super(message, options.hint);
    this.code = code;
    if (options.cause !== undefined) this.cause = options.cause;
  }
}
