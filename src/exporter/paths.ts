/**
 * Layer-relative paths: POSIX, no leading "./" or "/", no trailing "/", "" for the layer root.
 */

/** Components of a layer-relative path, or the reason it is not one (absolute, or has a ".." component). */
export function splitLayerPath(path: string): { parts: string[] } | { unsafe: string } {
  if (path.startsWith("/")) return { unsafe: "it is an absolute path" };
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") return { unsafe: "it has a '..' component that leaves the root" };
    parts.push(part);
  }
  return { parts };
}

/**
 * Normalizes an opaque directory given by a caller: layer-relative ("etc/apt", "./etc/apt/")
 * or an image path ("/etc/apt", as the layer store records them) → "etc/apt"; "." or "/" → "".
 */
export function normalizeOpaqueDir(path: string): string {
  const split = splitLayerPath(path.replace(/^\/+/, ""));
  if ("unsafe" in split) {
    throw new TypeError(`opaque directory ${JSON.stringify(path)} is not inside the layer: ${split.unsafe}`);
  }
  return split.parts.join("/");
}

export function joinLayerPath(parent: string, name: string): string {
  return parent === "" ? name : `${parent}/${name}`;
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Strict ancestors of a layer path, outermost first, including the root (""). */
export function* ancestors(path: string): Generator<string> {
  if (path === "") return;
  yield "";
  let index = path.indexOf("/");
  while (index >= 0) {
    yield path.slice(0, index);
    index = path.indexOf("/", index + 1);
  }
}
