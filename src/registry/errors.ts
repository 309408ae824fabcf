import { CodedUserError } from "../user-error.ts";

/** What went wrong talking to a registry; stable strings for callers, tests and exit codes. */
export type RegistryErrorCode =
  /** An image reference is malformed (uppercase repository, bad tag or digest...). */
  | "INVALID_REFERENCE"
  /** The mirrors/insecure settings, a registries config file or the docker config are malformed. */
  | "INVALID_CONFIG"
  /** The registry refused the credentials (or there were none and it wants some). */
  | "UNAUTHORIZED"
  /** Authenticated, but not allowed to do this (pull or push) on this repository. */
  | "DENIED"
  /** The image, manifest or blob does not exist on the registry. */
  | "NOT_FOUND"
  /** Downloaded content does not match its digest or size (twice in a row). */
  | "DIGEST_MISMATCH"
  /** Transient failures (5xx, 429, dropped connections, timeouts) outlasted the retries. */
  | "TOO_MANY_RETRIES"
  /** A manifest of a kind tsbuild does not read (Docker schema 1, an unknown media type). */
  | "UNSUPPORTED_MEDIA_TYPE"
  /** The image has no manifest for the asked platform. */
  | "NO_MATCHING_PLATFORM"
  /** The registry answered something that breaks the distribution protocol. */
  | "BAD_RESPONSE"
  /** The registry cannot be reached (unknown host, refused connection, TLS failure). */
  | "NETWORK"
  /** A docker-credential-<helper> program is missing or failed. */
  | "CREDENTIAL_HELPER"
  /** A blob to push is not in the local content store (or has the wrong size there). */
  | "MISSING_CONTENT"
  /** Writing a download to the local disk failed (no space, permissions). */
  | "LOCAL_STORE";

/**
 * A registry operation failed in a way the user can act on. The message names the image
 * reference (or registry) and what happened; the hint says what to do. Messages never
 * contain credentials or tokens.
 */
export class RegistryError extends CodedUserError<RegistryErrorCode> {
  override readonly name = "RegistryError";
}
