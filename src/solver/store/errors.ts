import { UserError, errnoCode } from "../../user-error.ts";

/**
 * Errors of the state root. Each says what failed, on which path, and what to do;
 * `code` is stable so callers can branch on it. A UserError, so the CLI prints the
 * message and hint without a stack trace.
 */
export class StoreError extends UserError {
  override readonly name = "StoreError";
  /** A Node errno code ("EACCES", "ENOSPC"...) or one of ours ("EDIGEST", "ENOLAYER", "ELAYOUT", "EBADNAME"...). */
  readonly code: string;
  readonly path: string | undefined;

  constructor(options: { code: string; message: string; path?: string; hint?: string | undefined; cause?: unknown }) {
    super(options.message, options.hint);
    this.code = options.code;
    this.path = options.path;
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

export { errnoCode };

const REASONS: Record<string, { reason: string; hint: string }> = {
  EACCES: {
    reason: "permission denied",
    hint: "run tsbuild as a user who can write the state root, or pick another one with --root DIR (or TSBUILD_ROOT)",
  },
  EPERM: {
    reason: "operation not permitted",
    hint: "run tsbuild as a user who can write the state root, or pick another one with --root DIR (or TSBUILD_ROOT)",
  },
  EROFS: {
    reason: "the file system is read-only",
    hint: "pick a writable state root with --root DIR (or TSBUILD_ROOT)",
  },
  ENOSPC: {
    reason: "no space left on the device",
    hint: "free disk space, for example with `tsbuild prune`, or move the state root to a bigger disk with --root DIR",
  },
  EDQUOT: {
    reason: "the disk quota is exhausted",
    hint: "free space within your quota, for example with `tsbuild prune`, or use another state root with --root DIR",
  },
  ENOTDIR: {
    reason: "a path component is a file, not a directory",
    hint: "remove or rename that file, or pick another state root with --root DIR",
  },
  EMFILE: { reason: "too many open files", hint: "raise the open-file limit (ulimit -n)" },
};

/**
 * Turns a file-system error the user can cause (permissions, full disk...) into a
 * StoreError that names the action and the path; anything else is returned as is,
 * since it is a bug rather than something the user can fix.
 */
export function describeFsError(error: unknown, action: string, path: string): unknown {
  if (error instanceof StoreError) return error;
  const code = errnoCode(error);
  const known = code === undefined ? undefined : REASONS[code];
  if (code === undefined || known === undefined) return error;
  return new StoreError({ code, message: `cannot ${action} ${path}: ${known.reason}`, path, hint: known.hint, cause: error });
}
