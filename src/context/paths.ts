/**
 * Path helpers for context-relative, '/'-separated paths, following Go's
 * path.Clean and BuildKit's fsutil (containsWildcards, splitWildcards).
 */
import path from "node:path";

/**
 * Joins a context-relative path to `root` so that the result can never be
 * outside `root`: the path is cleaned as if `root` were `/`, so `..` stops at
 * the root and a leading `/` means the root. Purely lexical: symlinks are not
 * looked at (the context resolves those itself, inside the root).
 */
export function safeJoin(root: string, relPath: string): string {
  const inside = path.posix.normalize(`/${relPath}`); // "/../x" -> "/x"
  return inside === "/" ? path.resolve(root) : path.join(path.resolve(root), inside);
}

/** Result of cleaning a source path relative to the context root. */
export interface CleanedSource {
  /** Path components, none of them "", "." or "..". Empty for the root itself. */
  readonly components: string[];
  /** True when a ".." would climb above the root (Go's Clean keeps a leading ".."). */
  readonly escapes: boolean;
}

/**
 * Cleans a source as written in COPY/ADD: a leading '/' means the context
 * root, "." and empty elements vanish, ".." removes the previous element.
 * A ".." with nothing left to remove is reported as an escape.
 */
export function cleanSource(source: string): CleanedSource {
  const components: string[] = [];
  let escapes = false;
  for (const element of source.split("/")) {
    if (element === "" || element === ".") continue;
    if (element === "..") {
      if (components.length > 0) components.pop();
      else escapes = true;
      continue;
    }
    components.push(element);
  }
  return { components, escapes };
}

/**
 * fsutil's containsWildcards: does this path element contain '*', '?' or '['
 * that is not escaped by a backslash? (A backslash always skips the next byte.)
 */
export function containsWildcards(element: string): boolean {
  for (let i = 0; i < element.length; i++) {
    const ch = element[i];
    if (ch === "\\") i++;
    else if (ch === "*" || ch === "?" || ch === "[") return true;
  }
  return false;
}

/**
 * fsutil's splitWildcards: the elements before the first one with a wildcard
 * (looked up as a plain path) and the rest joined with '/' (a filepath.Match
 * pattern relative to that directory), or undefined when there is no wildcard.
 */
export function splitWildcards(components: readonly string[]): { base: string[]; pattern: string | undefined } {
  const index = components.findIndex(containsWildcards);
  if (index < 0) return { base: [...components], pattern: undefined };
  return { base: components.slice(0, index), pattern: components.slice(index).join("/") };
}

/**
 * How many path elements a name matched by `pattern` can have at most:
 * only a literal '/' or a character class (even a negated one, `[^a]`)
 * can match a '/' in filepath.Match.
 */
export function maxMatchDepth(pattern: string): number {
  let depth = 1;
  for (const ch of pattern) {
    if (ch === "/" || ch === "[") depth++;
  }
  return depth;
}

/** Go's path.Clean for a relative or absolute '/'-separated path. */
export function goClean(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const kept: string[] = [];
  for (const element of p.split("/")) {
    if (element === "" || element === ".") continue;
    if (element !== "..") kept.push(element);
    else if (kept.length > 0 && kept[kept.length - 1] !== "..") kept.pop();
    else if (!rooted) kept.push("..");
  }
  const joined = (rooted ? "/" : "") + kept.join("/");
  return joined === "" ? "." : joined;
}

/** Joins a context-relative directory ("" for the root) and a name. */
export function joinRel(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}
