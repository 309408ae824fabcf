import { CodedUserError, errnoCode } from "../user-error.ts";

export { errnoCode };

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

export class SandboxError extends CodedUserError<SandboxErrorCode> {
  override readonly name = "SandboxError";
}
