import { CodedUserError } from "../user-error.ts";

/**
 * Errors of the exporter. Each carries a stable `code` (for callers and exit codes)
 * and a message that says what is wrong, where, and what to do.
 */
export type ExporterErrorCode =
  /** A layer tar entry would be written outside the layer root. */
  | "ERR_LAYER_UNSAFE_ENTRY"
  /** A layer tar entry is malformed or contradicts an earlier one. */
  | "ERR_LAYER_BAD_ENTRY"
  /** Reading a blob or writing extracted files failed (no space, permissions...). */
  | "ERR_LAYER_IO"
  /** A layer's compression or media type is not supported. */
  | "ERR_LAYER_UNSUPPORTED"
  /** A layer directory cannot be turned into a tar (bad opaque dir, changing file). */
  | "ERR_LAYER_SOURCE"
  /** A blob's content does not match its digest or size. */
  | "ERR_DIGEST_MISMATCH"
  /** An OCI image layout (or its tar) is missing, malformed or lacks the asked tag. */
  | "ERR_OCI_LAYOUT"
  /** An image config or the inputs of a manifest are inconsistent. */
  | "ERR_IMAGE_CONFIG"
  /** A device node, fifo or whiteout could not be created. */
  | "ERR_MKNOD"
  /** An option is out of range (a compression level, SOURCE_DATE_EPOCH...). */
  | "ERR_BAD_OPTION"
  /** An `--annotation` value, or annotations that the output cannot hold. */
  | "ERR_ANNOTATION"
  /** An image reference (a tag) that is malformed or cannot be used where it is given. */
  | "ERR_IMAGE_REFERENCE"
  /** A docker-save or OCI archive that is missing, malformed, or names files it does not hold. */
  | "ERR_IMAGE_ARCHIVE";

/**
 * A UserError: bad input (a corrupt archive, a hostile layer, a bad flag value) is the
 * user's to fix, so the CLI prints the message and hint without a stack trace.
 */
export class ExporterError extends CodedUserError<ExporterErrorCode> {
  override readonly name: string = "ExporterError";
  constructor(code: ExporterErrorCode, message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(code, message, options);
  }
}

/** A layer tar entry refused because it would escape the directory it is extracted into. */
export class UnsafeLayerEntryError extends ExporterError {
  override readonly name = "UnsafeLayerEntryError";
  /** The entry's name as written in the tar. */
  readonly entry: string;
  /** The layer blob the entry comes from. */
  readonly blob: string;
  constructor(blob: string, entry: string, reason: string) {
    super(
      "ERR_LAYER_UNSAFE_ENTRY",
      `layer ${blob}: refusing tar entry ${JSON.stringify(entry)}: ${reason}; ` +
        "the layer is malformed or malicious, nothing outside the extraction directory was touched",
    );
    this.entry = entry;
    this.blob = blob;
  }
}
