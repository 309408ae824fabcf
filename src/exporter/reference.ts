import { formatReference, parseReference, type ImageReference } from "../registry/reference.ts";
import { ExporterError } from "./errors.ts";

/** A tag in the fully qualified form: "docker.io/library/app:1", "registry:5000/app:latest". Digests are refused. */
export function qualifiedTag(text: string): string {
  return formatReference(taggedReference(text));
}

/** A tag in the familiar form `docker images` shows and `docker save` writes: "app:1", "team/app:1", "registry:5000/app:latest". */
export function familiarTag(text: string): string {
  return formatReference(taggedReference(text), { familiar: true });
}

/** "app" for docker.io/library/app, "team/app" for docker.io/team/app, "registry:5000/app" otherwise. */
export function familiarRepository(text: string): string {
  const { registry, repository } = parseReference(text);
  return formatReference({ registry, repository }, { familiar: true });
}

function taggedReference(text: string): ImageReference {
  const ref = parseReference(text);
  if (ref.digest !== undefined) {
    throw new ExporterError("ERR_IMAGE_REFERENCE", `${JSON.stringify(text)} names an image by digest, which cannot be a tag`, {
      hint: "name the image with a tag, e.g. app:1",
    });
  }
  return { ...ref, tag: ref.tag ?? "latest" };
}
