import { CodedUserError, errnoCode } from "../user-error.ts";

export { errnoCode };

/** What went wrong with the build context; stable strings for callers and tests. */
export type ContextErrorCode =
  /** The context directory does not exist or is not a directory. */
  | "CONTEXT_NOT_FOUND"
  /** The Dockerfile could not be found or read. */
  | "DOCKERFILE_NOT_FOUND"
  /** A `.dockerignore` (or `<Dockerfile>.dockerignore`) line is invalid. */
  | "INVALID_DOCKERIGNORE"
  /** A COPY/ADD source does not exist or is excluded by `.dockerignore`. */
  | "SOURCE_NOT_FOUND"
  /** A COPY/ADD source climbs out of the context with `..`. */
  | "SOURCE_OUTSIDE_CONTEXT"
  /** The sources (wildcards) selected nothing at all. */
  | "NO_SOURCE_FILES"
  /** A wildcard source or an `--exclude` pattern is malformed. */
  | "INVALID_PATTERN"
  /** A symlink chain is too long (or loops). */
  | "TOO_MANY_SYMLINKS"
  /** A source is a FIFO, socket or device. */
  | "UNSUPPORTED_FILE_TYPE"
  /** A file vanished or could not be read while it was being selected or hashed. */
  | "READ_FAILED";

/**
 * A mistake the user can fix about the build context: a missing or ignored
 * source, a path outside the context, a bad pattern.
 */
export class ContextError extends CodedUserError<ContextErrorCode> {
  override readonly name = "ContextError";
}


/** ENOENT/ENOTDIR: the path (or a parent) is not there. */
export function isNotFound(error: unknown): boolean {
  const code = errnoCode(error);
  return code === "ENOENT" || code === "ENOTDIR";
}
