import { describe, expect, it } from "vitest";
import { BadPatternError, hasMeta, matchPath } from "../../src/parser/glob.ts";

type MatchVector = readonly [pattern: string, name: string, expected: boolean | "bad pattern"];

const BAD = "bad pattern";

// Go's path/filepath match_test.go `matchTests`, as they run on Unix.
const goMatchTests: readonly MatchVector[] = [
  ["abc", "abc", true],
  ["*", "abc", true],
  ["*c", "abc", true],
  ["a*", "a", true],
  ["a*", "abc", true],
  ["a*", "ab/c", false],
  ["a*/b", "abc/b", true],
  ["a*/b", "a/c/b", false],
  ["a*b*c*d*e*/f", "axbxcxdxe/f", true],
  ["a*b*c*d*e*/f", "axbxcxdxexxx/f", true],
  ["a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false],
  ["a*b*c*d*e*/f", "axbxcxdxexxx/fff", false],
  ["a*b?c*x", "abxbbxdbxebxczzx", true],
  ["a*b?c*x", "abxbbxdbxebxczzy", false],
  ["ab[c]", "abc", true],
  ["ab[b-d]", "abc", true],
  ["ab[e-g]", "abc", false],
  ["ab[^c]", "abc", false],
  ["ab[^b-d]", "abc", false],
  ["ab[^e-g]", "abc", true],
  ["a\\*b", "a*b", true],
  ["a\\*b", "ab", false],
  ["a?b", "a☺b", true],
  ["a[^a]b", "a☺b", true],
  ["a???b", "a☺b", false],
  ["a[^a][^a][^a]b", "a☺b", false],
  ["[a-ζ]*", "α", true],
  ["*[a-ζ]", "A", false],
  ["a?b", "a/b", false],
  ["a*b", "a/b", false],
  ["[\\]a]", "]", true],
  ["[\\-]", "-", true],
  ["[x\\-]", "x", true],
  ["[x\\-]", "-", true],
  ["[x\\-]", "z", false],
  ["[\\-x]", "x", true],
  ["[\\-x]", "-", true],
  ["[\\-x]", "a", false],
  ["[]a]", "]", BAD],
  ["[-]", "-", BAD],
  ["[x-]", "x", BAD],
  ["[x-]", "-", BAD],
  ["[x-]", "z", BAD],
  ["[-x]", "x", BAD],
  ["[-x]", "-", BAD],
  ["[-x]", "a", BAD],
  ["\\", "a", BAD],
  ["[a-b-c]", "a", BAD],
  ["[", "a", BAD],
  ["[^", "a", BAD],
  ["[^bc", "a", BAD],
  ["a[", "a", BAD],
  ["a[", "ab", BAD],
  ["a[", "x", BAD],
  ["a/b[", "x", BAD],
  ["*x", "xxx", true],
];

// Further corners of Go's implementation.
const extraMatchTests: readonly MatchVector[] = [
  ["", "", true],
  ["", "a", false],
  ["*", "", true],
  ["*", "a/b", false],
  ["**", "a/b", false],
  ["*/*", "a/b", true],
  ["a/*/c", "a/b/c", true],
  ["a/*/c", "a/b/x/c", false],
  ["?", "", false],
  ["?", "/", false],
  ["?", "😀", true],
  ["??", "😀", false],
  ["[!a]", "!", true], // '!' does not negate in Go, only '^' does
  ["[!a]", "b", false],
  ["[^a]", "/", true], // classes do not exclude the separator
  ["\\a\\b", "ab", true],
  ["a\\\\", "a\\", true],
  ["[\\\\]", "\\", true],
  ["ab[^c", "x", BAD], // syntax is checked after a mismatch
  ["*[", "x", BAD],
  ["x*\\", "xy", BAD],
  ["[a-", "a", BAD],
  ["[z-a]", "m", false], // Go does not check that lo <= hi
  ["[Local-Only]", "y", true],
  ["[Local-Only]", "O", false], // the range l-O is empty
  ["*[^é]", "é", true], // '*' may stop inside a UTF-8 sequence, as in Go
  ["[^é]", "é", false],
  ["a*", "A", false],
];

describe("matchPath (Go filepath.Match)", () => {
  it.each([...goMatchTests, ...extraMatchTests])("Match(%j, %j) = %j", (pattern, name, expected) => {
    if (expected === BAD) {
      expect(() => matchPath(pattern, name)).toThrow(BadPatternError);
    } else {
      expect(matchPath(pattern, name)).toBe(expected);
    }
  });

  it("reports the pattern in the error", () => {
    expect(() => matchPath("a[", "a")).toThrow(/syntax error in pattern "a\["/);
  });
});

const hasMetaTests: readonly (readonly [string, boolean])[] = [
  ["abc", false],
  ["a/b.c", false],
  ["a*", true],
  ["a?", true],
  ["a[b]", true],
  ["a\\b", true],
  ["a]b", false],
  ["a{b}", false],
  ["", false],
];

describe("hasMeta", () => {
  it.each(hasMetaTests)("hasMeta(%j) = %j", (pattern, expected) => {
    expect(hasMeta(pattern)).toBe(expected);
  });
});
