import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** `sha256:<hex>` of a buffer or string. */
export function sha256Digest(data: Uint8Array | string): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

/** The hex part of a `sha256:` digest; throws on any other form (so it can name a file safely). */
export function digestHex(digest: string): string {
  const match = DIGEST_RE.exec(digest);
  if (!match?.[1]) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)} (expected sha256: and 64 lowercase hex digits)`);
  return match[1];
}

export function isDigest(value: unknown): value is string {
  return typeof value === "string" && DIGEST_RE.test(value);
}

/** A pass-through stream that hashes and counts what flows through it (each byte once). */
export class HashTap extends Transform {
  readonly hash: Hash = createHash("sha256");
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }
  /** `sha256:<hex>`; call once, after the stream has finished. */
  digest(): string {
    return "sha256:" + this.hash.digest("hex");
  }
}
