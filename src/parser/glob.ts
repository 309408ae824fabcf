/**
 * Go's `path/filepath.Match` for '/'-separated paths (the non-Windows
 * behaviour: `\` escapes the next character).
 *
 *   '*'              any run of non-'/' characters
 *   '?'              one non-'/' character
 *   '[' ['^'] ranges ']'   character class; ranges are `c`, `\c` or `lo-hi`
 *   '\' c            the character c
 *
 * Go compares bytes and decodes UTF-8 only for '?' and classes, and a '*'
 * skips forward one byte at a time. We work on the UTF-8 encoding too so
 * that even the odd corners (a class matched against the middle of a
 * multi-byte character) give Go's answer.
 */

/** Go's `filepath.ErrBadPattern`: the pattern is malformed. */
export class BadPatternError extends Error {
  constructor(readonly pattern: string) {
    super(`syntax error in pattern ${JSON.stringify(pattern)}`);
    this.name = "BadPatternError";
  }
}

const SLASH = 0x2f;
const STAR = 0x2a;
const QUESTION = 0x3f;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const CARET = 0x5e;
const DASH = 0x2d;
const RUNE_ERROR = 0xfffd;

const utf8 = new TextEncoder();

/**
 * Reports whether `name` matches the shell pattern `pattern`, exactly like
 * Go's `filepath.Match` on Unix. Throws {@link BadPatternError} when the
 * pattern is malformed (Go checks the whole pattern even after a mismatch).
 */
export function matchPath(pattern: string, name: string): boolean {
  const matcher = new ByteMatcher(utf8.encode(pattern), pattern);
  return matcher.match(utf8.encode(name));
}

/** Like Go's unexported `filepath.hasMeta`: does the pattern use `*?[\`? */
export function hasMeta(pattern: string): boolean {
  return /[*?[\\]/.test(pattern);
}

/** A chunk is a run of single-character operators, optionally after a star. */
interface Chunk {
  readonly star: boolean;
  readonly start: number;
  readonly end: number;
}

class ByteMatcher {
  constructor(
    private readonly pattern: Uint8Array,
    private readonly source: string,
  ) {}

  match(name: Uint8Array): boolean {
    let patternPos = 0;
    let namePos = 0;
    while (patternPos < this.pattern.length) {
      const chunk = this.scanChunk(patternPos);
      patternPos = chunk.end;
      const isLastChunk = patternPos === this.pattern.length;
      if (chunk.star && chunk.start === chunk.end) {
        // A trailing '*' matches the rest of the name unless it has a '/'.
        return name.indexOf(SLASH, namePos) < 0;
      }
      const rest = this.matchChunk(chunk, name, namePos);
      // The last chunk must consume the whole name, otherwise let '*' try.
      if (rest >= 0 && (rest === name.length || !isLastChunk)) {
        namePos = rest;
        continue;
      }
      const skipped = chunk.star ? this.matchAfterStar(chunk, name, namePos, isLastChunk) : -1;
      if (skipped >= 0) {
        namePos = skipped;
        continue;
      }
      this.validateFrom(patternPos);
      return false;
    }
    return namePos === name.length;
  }

  /** Let the star swallow 1, 2, ... bytes (never a '/') until the chunk matches. */
  private matchAfterStar(chunk: Chunk, name: Uint8Array, namePos: number, isLastChunk: boolean): number {
    for (let i = namePos; i < name.length && name[i] !== SLASH; i++) {
      const rest = this.matchChunk(chunk, name, i + 1);
      if (rest < 0 || (isLastChunk && rest < name.length)) continue;
      return rest;
    }
    return -1;
  }

  /** Go reports a syntax error in the rest of the pattern even when the name already failed. */
  private validateFrom(patternPos: number): void {
    const empty = new Uint8Array(0);
    while (patternPos < this.pattern.length) {
      const chunk = this.scanChunk(patternPos);
      this.matchChunk(chunk, empty, 0);
      patternPos = chunk.end;
    }
  }

  /** Splits off the next chunk: leading stars, then everything up to the next unbracketed star. */
  private scanChunk(pos: number): Chunk {
    const p = this.pattern;
    let star = false;
    while (pos < p.length && p[pos] === STAR) {
      pos++;
      star = true;
    }
    const start = pos;
    let inRange = false;
    for (; pos < p.length; pos++) {
      const byte = p[pos];
      if (byte === BACKSLASH) {
        if (pos + 1 < p.length) pos++; // a dangling '\' is reported by matchChunk
      } else if (byte === OPEN_BRACKET) {
        inRange = true;
      } else if (byte === CLOSE_BRACKET) {
        inRange = false;
      } else if (byte === STAR && !inRange) {
        break;
      }
    }
    return { star, start, end: pos };
  }

  /**
   * Matches the chunk against the start of `name[namePos..]`; returns the
   * position after the match or -1. After a mismatch it keeps parsing the
   * chunk so that syntax errors are always reported.
   */
  private matchChunk(chunk: Chunk, name: Uint8Array, namePos: number): number {
    const p = this.pattern;
    let pos = chunk.start;
    let s = namePos;
    let failed = false;
    while (pos < chunk.end) {
      if (!failed && s >= name.length) failed = true;
      const byte = p[pos];
      if (byte === OPEN_BRACKET) {
        let rune = 0;
        if (!failed) {
          const decoded = decodeRune(name, s);
          rune = decoded.rune;
          s += decoded.size;
        }
        const cls = this.matchClass(pos + 1, chunk.end, rune);
        pos = cls.next;
        if (!cls.matched) failed = true;
      } else if (byte === QUESTION) {
        if (!failed) {
          if (name[s] === SLASH) failed = true;
          s += decodeRune(name, s).size;
        }
        pos++;
      } else {
        if (byte === BACKSLASH) {
          pos++;
          if (pos >= chunk.end) throw new BadPatternError(this.source);
        }
        if (!failed) {
          if (p[pos] !== name[s]) failed = true;
          s++;
        }
        pos++;
      }
    }
    return failed ? -1 : s;
  }

  /** Parses the class body starting after '[' and tests `rune` against it. */
  private matchClass(pos: number, end: number, rune: number): { matched: boolean; next: number } {
    const p = this.pattern;
    let negated = false;
    if (pos < end && p[pos] === CARET) {
      negated = true;
      pos++;
    }
    let inClass = false;
    let ranges = 0;
    for (;;) {
      if (pos < end && p[pos] === CLOSE_BRACKET && ranges > 0) {
        pos++;
        break;
      }
      const lo = this.classChar(pos, end);
      let hi = lo;
      pos = lo.next;
      if (p[pos] === DASH) {
        hi = this.classChar(pos + 1, end);
        pos = hi.next;
      }
      if (lo.rune <= rune && rune <= hi.rune) inClass = true;
      ranges++;
    }
    return { matched: inClass !== negated, next: pos };
  }

  /** Go's getEsc: one possibly escaped class character, which must not be the last byte. */
  private classChar(pos: number, end: number): { rune: number; next: number } {
    const p = this.pattern;
    if (pos >= end || p[pos] === DASH || p[pos] === CLOSE_BRACKET) throw new BadPatternError(this.source);
    if (p[pos] === BACKSLASH) {
      pos++;
      if (pos >= end) throw new BadPatternError(this.source);
    }
    const { rune, size } = decodeRune(p.subarray(0, end), pos);
    if (rune === RUNE_ERROR && size === 1) throw new BadPatternError(this.source);
    const next = pos + size;
    if (next >= end) throw new BadPatternError(this.source);
    return { rune, next };
  }
}

/** Go's utf8.DecodeRune: an invalid or truncated sequence decodes as U+FFFD of size 1. */
function decodeRune(bytes: Uint8Array, pos: number): { rune: number; size: number } {
  const first = bytes[pos];
  if (first === undefined) return { rune: RUNE_ERROR, size: 0 };
  if (first < 0x80) return { rune: first, size: 1 };
  const size = first >= 0xf0 ? 4 : first >= 0xe0 ? 3 : first >= 0xc2 ? 2 : 0;
  if (size === 0 || first > 0xf4) return { rune: RUNE_ERROR, size: 1 };
  let rune = first & (0xff >> (size + 1));
  for (let i = 1; i < size; i++) {
    const next = bytes[pos + i];
    if (next === undefined || (next & 0xc0) !== 0x80) return { rune: RUNE_ERROR, size: 1 };
    rune = (rune << 6) | (next & 0x3f);
  }
  const tooShort = rune < [0, 0, 0x80, 0x800, 0x10000][size]!;
  const isSurrogate = rune >= 0xd800 && rune <= 0xdfff;
  if (tooShort || isSurrogate || rune > 0x10ffff) return { rune: RUNE_ERROR, size: 1 };
  return { rune, size };
}
