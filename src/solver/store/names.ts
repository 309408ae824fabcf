import { StoreError } from "./errors.ts";

/**
 * Cache keys and layer ids become file names, so they are restricted to characters
 * that are safe in one path component: no "/", no leading dot, nothing hidden.
 */
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._:+-]{0,199}$/;

/**
 * Layer directories end up in overlayfs mount options (lowerdir=a:b:c), where ":" and ","
 * are separators, so layer ids are stricter than cache keys.
 */
const LAYER_ID = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

export function isValidLayerId(id: string): boolean {
  return LAYER_ID.test(id);
}

export function checkLayerId(id: string): string {
  if (!isValidLayerId(id)) {
    throw new StoreError({
      code: "EBADNAME",
      message: `invalid layer id ${JSON.stringify(id)}: use 1-200 characters from [A-Za-z0-9._-], not starting with "." or "-" (no ":", which overlayfs mount options reserve)`,
    });
  }
  return id;
}

export function checkCacheKey(key: string): string {
  if (!SAFE_NAME.test(key) || shardOf(key).length < 2) {
    throw new StoreError({
      code: "EBADNAME",
      message: `invalid cache key ${JSON.stringify(key)}: use 2-200 characters from [A-Za-z0-9._:+-] (for example "sha256:<hex>")`,
    });
  }
  return key;
}

/** The fan-out directory of a cache key: the first two characters after any "algorithm:" prefix. */
export function shardOf(key: string): string {
  return key.slice(key.lastIndexOf(":") + 1, key.lastIndexOf(":") + 3);
}

const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  algorithm: "sha256" | "sha512";
  hex: string;
}

/** Parses "sha256:<hex>" (or sha512), rejecting anything that could not have come from a hash. */
export function parseDigest(digest: string): ParsedDigest {
  const match = /^(sha256|sha512):([0-9a-f]+)$/.exec(digest);
  const algorithm = match?.[1];
  const hex = match?.[2];
  if (algorithm === undefined || hex === undefined || hex.length !== DIGEST_HEX_LENGTH[algorithm]) {
    throw new StoreError({
      code: "EBADNAME",
      message: `invalid digest ${JSON.stringify(digest)}: expected "sha256:" followed by 64 lowercase hex digits (or "sha512:" and 128)`,
    });
  }
  return { algorithm: algorithm as ParsedDigest["algorithm"], hex };
}
