/**
 * Image references, normalized as Docker does (distribution/reference's
 * ParseNormalizedNamed): "alpine" is docker.io/library/alpine:latest.
 */
import { RegistryError } from "./errors.ts";

export interface ImageReference {
  /** "docker.io", "registry.example.com", "localhost:5000", "[::1]:5000". */
  registry: string;
  /** "library/alpine", "user/app", "a/b/c". */
  repository: string;
  tag?: string;
  /** "sha256:<hex>"; when set, pulls use it and ignore the tag. */
  digest?: string;
}

export const DOCKER_HUB = "docker.io";
const LEGACY_DOCKER_HUB = "index.docker.io";
const MAX_NAME_LENGTH = 255;

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };
const EXAMPLES = 'write NAME[:TAG][@DIGEST], e.g. "alpine", "alpine:3.20", "registry.example.com/team/app:1.2" or "app@sha256:<64 hex digits>"';

function invalid(text: string, problem: string): RegistryError {
  return new RegistryError("INVALID_REFERENCE", `invalid image reference ${JSON.stringify(text)}: ${problem}`, { hint: EXAMPLES });
}

/** Parses an image reference the way `docker pull` reads it. Throws RegistryError INVALID_REFERENCE. */
export function parseReference(text: string): ImageReference {
  if (text === "") throw invalid(text, "it is empty");
  if (/\s/.test(text)) throw invalid(text, "it contains white space");
  if (/^[a-f0-9]{64}$/.test(text)) throw invalid(text, "a 64-digit hexadecimal string is an image ID, not a name");

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkDigest(text, digest);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw invalid(text, `the tag ${JSON.stringify(tag)} is not valid (up to 128 letters, digits, "_", "." and "-", not starting with "." or "-")`);
    }
  }
  if (rest === "") throw invalid(text, "the name is missing");

  let registry: string;
  let repository: string;
  const slash = rest.indexOf("/");
  const first = slash < 0 ? "" : rest.slice(0, slash);
  // Docker's rule: the first component is a registry if it looks like a host name.
  if (slash < 0 || (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)) {
    registry = DOCKER_HUB;
    repository = rest;
  } else {
    registry = first;
    repository = rest.slice(slash + 1);
  }
  if (registry === LEGACY_DOCKER_HUB) registry = DOCKER_HUB;
  if (!DOMAIN_RE.test(registry)) throw invalid(text, `the registry ${JSON.stringify(registry)} is not a valid host[:port]`);
  if (repository.toLowerCase() !== repository) throw invalid(text, "the repository name must be lowercase");
  if (repository === "") throw invalid(text, "the repository name is missing");
  for (const component of repository.split("/")) {
    if (!PATH_COMPONENT_RE.test(component)) {
      throw invalid(
        text,
        component === ""
          ? "the repository name has an empty path component"
          : `the repository path component ${JSON.stringify(component)} is not valid (lowercase letters and digits, separated by ".", "_", "__" or "-")`,
      );
    }
  }
  if (registry === DOCKER_HUB && !repository.includes("/")) repository = `library/${repository}`;
  if (`${registry}/${repository}`.length > MAX_NAME_LENGTH) throw invalid(text, `the name is longer than ${MAX_NAME_LENGTH} characters`);

  const ref: ImageReference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  if (tag === undefined && digest === undefined) ref.tag = "latest";
  return ref;
}

function checkDigest(text: string, digest: string): void {
  const match = DIGEST_RE.exec(digest);
  if (match === null) throw invalid(text, `the digest ${JSON.stringify(digest)} is not valid (expected sha256:<64 hex digits>)`);
  const [, algorithm = "", hex = ""] = match;
  const length = DIGEST_HEX_LENGTH[algorithm];
  if (length === undefined) throw invalid(text, `the digest algorithm ${JSON.stringify(algorithm)} is not supported (use sha256 or sha512)`);
  if (hex.length !== length || !/^[0-9a-f]+$/.test(hex)) {
    throw invalid(text, `the digest ${JSON.stringify(digest)} is not valid (${algorithm} takes ${length} lowercase hex digits)`);
  }
}

/**
 * The reference as text. Fully qualified by default ("docker.io/library/alpine:latest");
 * `familiar` gives the short form Docker prints ("alpine:latest", "user/app:1").
 */
export function formatReference(ref: ImageReference, options: { familiar?: boolean } = {}): string {
  let name = `${ref.registry}/${ref.repository}`;
  if (options.familiar && ref.registry === DOCKER_HUB) {
    const rest = ref.repository.startsWith("library/") ? ref.repository.slice("library/".length) : ref.repository;
    name = rest.includes("/") ? ref.repository : rest;
  }
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** How messages name an image: the familiar form, as the user most likely typed it. */
export function displayReference(ref: ImageReference): string {
  return formatReference(ref, { familiar: true });
}
