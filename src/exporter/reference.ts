import { ExporterError } from "./errors.ts";

/** An image reference split as Docker's reference grammar does, with Docker Hub's defaults applied. */
export interface ImageReference {
  /** "docker.io", "registry.example.com:5000", "localhost". */
  domain: string;
  /** "library/alpine", "team/app". */
  path: string;
  tag?: string;
  digest?: string;
}

const DOCKER_HUB = "docker.io";
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/;

/**
 * Parses "alpine", "alpine:3.20", "team/app:1", "registry:5000/app:1", "docker.io/library/alpine"
 * or "app@sha256:…". The first component is a registry when it has a "." or ":" or is
 * "localhost"; without one the image is on Docker Hub ("library/" for one-component names).
 */
export function parseImageReference(text: string): ImageReference {
  const fail = (why: string) =>
    new ExporterError("ERR_IMAGE_REFERENCE", `invalid image reference ${JSON.stringify(text)}: ${why}`, {
      hint: "write NAME[:TAG], e.g. app:1 or registry.example.com:5000/team/app:1.2 (names are lowercase)",
    });
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw fail(`${JSON.stringify(digest)} is not a digest`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw fail(`${JSON.stringify(tag)} is not a tag (letters, digits, '_', '.', '-'; up to 128)`);
  }
  const parts = rest.split("/");
  let domain = DOCKER_HUB;
  const first = parts[0] ?? "";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    if (!DOMAIN.test(first)) throw fail(`${JSON.stringify(first)} is not a registry host`);
    domain = first === "index.docker.io" ? DOCKER_HUB : first;
    parts.shift();
  }
  if (parts.length === 0 || parts.some((part) => !PATH_COMPONENT.test(part))) {
    throw fail("the name must be lowercase letters, digits and separators ('.', '_', '__', '-'), in '/'-separated parts");
  }
  if (domain === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  const path = parts.join("/");
  if (domain.length + 1 + path.length > 255) throw fail("the name is longer than 255 characters");
  return { domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** A tag in the fully qualified form: "docker.io/library/app:1", "registry:5000/app:latest". Digests are refused. */
export function qualifiedTag(text: string): string {
  const ref = taggedReference(text);
  return `${ref.domain}/${ref.path}:${ref.tag}`;
}

/** A tag in the familiar form `docker images` shows and `docker save` writes: "app:1", "team/app:1", "registry:5000/app:latest". */
export function familiarTag(text: string): string {
  const ref = taggedReference(text);
  return `${familiarRepository(ref)}:${ref.tag}`;
}

/** "app" for docker.io/library/app, "team/app" for docker.io/team/app, "registry:5000/app" otherwise. */
export function familiarRepository(ref: ImageReference): string {
  if (ref.domain !== DOCKER_HUB) return `${ref.domain}/${ref.path}`;
  return ref.path.startsWith("library/") && ref.path.indexOf("/", "library/".length) < 0 ? ref.path.slice("library/".length) : ref.path;
}

function taggedReference(text: string): ImageReference & { tag: string } {
  const ref = parseImageReference(text);
  if (ref.digest !== undefined) {
    throw new ExporterError("ERR_IMAGE_REFERENCE", `${JSON.stringify(text)} names an image by digest, which cannot be a tag`, {
      hint: "name the image with a tag, e.g. app:1",
    });
  }
  return { ...ref, tag: ref.tag ?? "latest" };
}
