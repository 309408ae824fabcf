import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  compileIgnorePattern,
  DockerignoreError,
  findDockerignore,
  IgnoreMatcher,
  loadDockerignore,
  parseDockerignore,
  type PatternKind,
} from "../../src/parser/dockerignore.ts";

/** The pattern list as patternmatcher sees it: "!" prefix for exceptions. */
function patternsOf(text: string): string[] {
  return parseDockerignore(text).map((rule) => (rule.exclusion ? `!${rule.pattern}` : rule.pattern));
}

function matcherFor(patterns: readonly string[]): IgnoreMatcher {
  return new IgnoreMatcher(parseDockerignore(patterns.join("\n")));
}

function parseError(text: string, file?: string): DockerignoreError {
  try {
    parseDockerignore(text, file);
  } catch (error) {
    if (error instanceof DockerignoreError) return error;
    throw error;
  }
  throw new Error("expected a DockerignoreError");
}

describe("parseDockerignore (ignorefile.ReadAll + patternmatcher.New)", () => {
  it("reads ignorefile's ReadAll test content", () => {
    const content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
    expect(patternsOf(content)).toEqual(["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path"]);
  });

  // One line in, the pattern patternmatcher ends up with.
  const lineVectors: readonly (readonly [line: string, pattern: string])[] = [
    ["./a", "a"],
    ["a/../b", "b"],
    ["a/", "a"],
    ["a//b/./c/", "a/b/c"],
    ["/a/b", "a/b"],
    ["//a", "a"],
    ["/", "/"],
    ["/..", "/"],
    [".", "."],
    ["./", "."],
    ["..", ".."],
    ["../a/..", ".."],
    ["a/../..", ".."],
    ["**/", "**"],
    ["  spaced out  ", "spaced out"],
    ["\t\v\f tabs \t", "tabs"],
    ["\u00a0\u0085nbsp and nel\u2003", "nbsp and nel"], // Go's TrimSpace, not JS trim
    [" #not a comment", "#not a comment"],
    ["\\#escaped", "\\#escaped"],
    ["!a", "!a"],
    ["! /inverted/abs/path", "!inverted/abs/path"],
    ["!./x/", "!x"],
    ["!a/../b", "!b"],
    ["!!a", "!!a"],
    ["\\!a", "\\!a"],
    ["a\\ b", "a\\ b"],
    ["\ufeffnot-first-line", "\ufeffnot-first-line"], // U+FEFF is not white space for Go
  ];

  it.each(lineVectors)("line %j becomes pattern %j", (line, pattern) => {
    expect(patternsOf(`first\n${line}`)).toEqual(["first", pattern]);
  });

  it("skips comments and blank lines, but keeps 1-based line numbers", () => {
    const rules = parseDockerignore("# header\n\n   \nnode_modules\n#x\n!keep\n\n");
    expect(rules).toEqual([
      { pattern: "node_modules", exclusion: false, line: 4 },
      { pattern: "keep", exclusion: true, line: 6 },
    ]);
  });

  it("handles CRLF line endings and a file without a final newline", () => {
    expect(patternsOf("a\r\n#c\r\n!b\r\nc")).toEqual(["a", "!b", "c"]);
    expect(parseDockerignore("a\r\n\r\nb\r\n").map((rule) => rule.line)).toEqual([1, 3]);
  });

  it("treats a lone CR as part of the line, as bufio.ScanLines does", () => {
    expect(patternsOf("a\rb")).toEqual(["a\rb"]);
  });

  it("strips a UTF-8 byte order mark from the first line only", () => {
    expect(patternsOf("\ufeff# comment\n\ufeffx")).toEqual(["\ufeffx"]);
    expect(patternsOf("\ufeffa")).toEqual(["a"]);
  });

  it("returns no rules for empty input", () => {
    expect(parseDockerignore("")).toEqual([]);
    expect(parseDockerignore("\n\n# only comments\n")).toEqual([]);
  });

  // Lines Docker rejects, with the line that is reported.
  const errorVectors: readonly (readonly [text: string, line: number, message: RegExp])[] = [
    ["!", 1, /illegal exclusion pattern: "!"/],
    ["a\n! ", 2, /illegal exclusion pattern/],
    ["a\nb\n!/", 3, /illegal exclusion pattern/], // "!/" cleans to "!"
    ["[", 1, /invalid pattern "\[": syntax error in pattern/],
    ["ok\n\\", 2, /invalid pattern "\\\\"/],
    ["[]a]", 1, /syntax error/],
    ["[x-]", 1, /syntax error/],
    ["[-x]", 1, /syntax error/],
    ["[a-b-c]", 1, /syntax error/],
    ["[^bc", 1, /syntax error/],
    ["a/b[", 1, /syntax error/],
    ["!docs/[", 1, /invalid pattern "docs\/\["/],
    // Accepted by filepath.Match but rejected by Go's regexp when Docker matches.
    ["# c\n[Local-Only]/", 2, /invalid pattern "\[Local-Only\]".*invalid character class range/],
    ["\\q", 1, /invalid escape sequence \\q/],
    ["\\1", 1, /invalid escape sequence/],
    ["\\xZZ", 1, /invalid escape sequence/],
    ["\\x4", 1, /invalid escape sequence/],
    ["\\x{41}", 1, /invalid escape sequence/], // '{' is escaped before Go sees it
    ["\\p{Greek}", 1, /invalid character class range/],
    ["[\\p{Lu}]", 1, /invalid character class range/],
    ["\\C", 1, /invalid escape sequence \\C/],
    ["[\\b]", 1, /invalid escape sequence/],
    ["\\é", 1, /invalid escape sequence/],
    ["[[:alpah:]]", 1, /invalid character class range \[:alpah:\]/],
    ["\\p{Bogus}", 1, /invalid character class range/],
    ["\\p", 1, /invalid character class range/],
    ["[z-a]", 1, /invalid character class range/],
  ];

  it.each(errorVectors)("rejects %j at line %i", (text, line, message) => {
    const error = parseError(text, "ctx/.dockerignore");
    expect(error.file).toBe("ctx/.dockerignore");
    expect(error.line).toBe(line);
    expect(error.message).toMatch(message);
    expect(error.message.startsWith(`ctx/.dockerignore:${line}: `)).toBe(true);
  });

  it("names .dockerignore when no file is given", () => {
    expect(parseError("x\n[").message).toBe('.dockerignore:2: invalid pattern "[": syntax error in pattern');
  });

  it("rejects lines that bufio.Scanner cannot hold", () => {
    expect(patternsOf("a".repeat(65_535))).toHaveLength(1);
    expect(parseError(`ok\n${"é".repeat(32_768)}`).line).toBe(2);
    expect(parseError(`#${"a".repeat(65_535)}`).message).toMatch(/longer than 65535 bytes/);
  });
});

type Expectation = "exact" | "inexact" | "fail";

// patternmatcher_test.go TestMatches: "exact" and "inexact" both mean excluded
// under MatchesOrParentMatches.
const patternMatcherTests: readonly (readonly [pattern: string, path: string, expected: Expectation])[] = [
  ["**", "file", "exact"],
  ["**", "file/", "exact"],
  ["**/", "file", "exact"],
  ["**/", "file/", "exact"],
  ["**", "/", "exact"],
  ["**/", "/", "exact"],
  ["**", "dir/file", "exact"],
  ["**/", "dir/file", "exact"],
  ["**", "dir/file/", "exact"],
  ["**/", "dir/file/", "exact"],
  ["**/**", "dir/file", "exact"],
  ["**/**", "dir/file/", "exact"],
  ["dir/**", "dir/file", "exact"],
  ["dir/**", "dir/file/", "exact"],
  ["dir/**", "dir/dir2/file", "exact"],
  ["dir/**", "dir/dir2/file/", "exact"],
  ["**/dir", "dir", "exact"],
  ["**/dir", "dir/file", "inexact"],
  ["**/dir2/*", "dir/dir2/file", "exact"],
  ["**/dir2/*", "dir/dir2/file/", "inexact"],
  ["**/dir2/**", "dir/dir2/dir3/file", "exact"],
  ["**/dir2/**", "dir/dir2/dir3/file/", "exact"],
  ["**file", "file", "exact"],
  ["**file", "dir/file", "exact"],
  ["**/file", "dir/file", "exact"],
  ["**file", "dir/dir/file", "exact"],
  ["**/file", "dir/dir/file", "exact"],
  ["**/file*", "dir/dir/file", "exact"],
  ["**/file*", "dir/dir/file.txt", "exact"],
  ["**/file*txt", "dir/dir/file.txt", "exact"],
  ["**/file*.txt", "dir/dir/file.txt", "exact"],
  ["**/file*.txt*", "dir/dir/file.txt", "exact"],
  ["**/**/*.txt", "dir/dir/file.txt", "exact"],
  ["**/**/*.txt2", "dir/dir/file.txt", "fail"],
  ["**/*.txt", "file.txt", "exact"],
  ["**/**/*.txt", "file.txt", "exact"],
  ["a**/*.txt", "a/file.txt", "exact"],
  ["a**/*.txt", "a/dir/file.txt", "exact"],
  ["a**/*.txt", "a/dir/dir/file.txt", "exact"],
  ["a/*.txt", "a/dir/file.txt", "fail"],
  ["a/*.txt", "a/file.txt", "exact"],
  ["a/*.txt**", "a/file.txt", "exact"],
  ["a[b-d]e", "ae", "fail"],
  ["a[b-d]e", "ace", "exact"],
  ["a[b-d]e", "aae", "fail"],
  ["a[^b-d]e", "aze", "exact"],
  [".*", ".foo", "exact"],
  [".*", "foo", "fail"],
  ["abc.def", "abcdef", "fail"],
  ["abc.def", "abc.def", "exact"],
  ["abc.def", "abcZdef", "fail"],
  ["abc?def", "abcZdef", "exact"],
  ["abc?def", "abcdef", "fail"],
  ["**/foo/bar", "foo/bar", "exact"],
  ["**/foo/bar", "dir/foo/bar", "exact"],
  ["**/foo/bar", "dir/dir2/foo/bar", "exact"],
  ["abc/**", "abc", "fail"],
  ["abc/**", "abc/def", "exact"],
  ["abc/**", "abc/def/ghi", "exact"],
  ["**/.foo", ".foo", "exact"],
  ["**/.foo", "bar.foo", "fail"],
  ["a(b)c/def", "a(b)c/def", "exact"],
  ["a(b)c/def", "a(b)c/xyz", "fail"],
  ["a.|)$(}+{bc", "a.|)$(}+{bc", "exact"],
  [
    "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
    "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
    "exact",
  ],
  ["dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "exact"],
  // The Unix-only additions.
  ["a\\\\", "a\\", "exact"],
  ["a\\*b", "a*b", "exact"],
];

const multiPatternTests: readonly (readonly [patterns: readonly string[], path: string, excluded: boolean])[] = [
  [["**", "!util/docker/web"], "util/docker/web/foo", false],
  [["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true],
  [["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false],
  [["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false],
];

// patternmatcher_test.go matchTests (Go's filepath.Match table run through the matcher).
const patternMatcherMatchTests: readonly (readonly [pattern: string, path: string, expected: boolean | "error"])[] = [
  ["abc", "abc", true],
  ["*", "abc", true],
  ["*c", "abc", true],
  ["a*", "a", true],
  ["a*", "abc", true],
  ["a*", "ab/c", true],
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
  ["[]a]", "]", "error"],
  ["[-]", "-", "error"],
  ["[x-]", "x", "error"],
  ["[x-]", "-", "error"],
  ["[x-]", "z", "error"],
  ["[-x]", "x", "error"],
  ["[-x]", "-", "error"],
  ["[-x]", "a", "error"],
  ["\\", "a", "error"],
  ["[a-b-c]", "a", "error"],
  ["[", "a", "error"],
  ["[^", "a", "error"],
  ["[^bc", "a", "error"],
  ["a[", "a", "error"],
  ["a[", "ab", "error"],
  ["*x", "xxx", true],
];

// patternmatcher_test.go compileTests (the '/' separator column); "" when no regexp is built.
const compileTests: readonly (readonly [pattern: string, kind: PatternKind, goRegexp: string])[] = [
  ["*", "regexp", "^[^/]*$"],
  ["file*", "regexp", "^file[^/]*$"],
  ["*file", "regexp", "^[^/]*file$"],
  ["a*/b", "regexp", "^a[^/]*/b$"],
  ["**", "suffix", ""],
  ["**/**", "regexp", "^(.*/)?.*$"],
  ["dir/**", "prefix", ""],
  ["**/dir", "suffix", ""],
  ["**/dir2/*", "regexp", "^(.*/)?dir2/[^/]*$"],
  ["**/dir2/**", "regexp", "^(.*/)?dir2/.*$"],
  ["**file", "suffix", ""],
  ["**/file*txt", "regexp", "^(.*/)?file[^/]*txt$"],
  ["**/**/*.txt", "regexp", "^(.*/)?(.*/)?[^/]*\\.txt$"],
  ["a[b-d]e", "regexp", "^a[b-d]e$"],
  [".*", "regexp", "^\\.[^/]*$"],
  ["abc.def", "exact", ""],
  ["abc?def", "regexp", "^abc[^/]def$"],
  ["**/foo/bar", "suffix", ""],
  ["a(b)c/def", "exact", ""],
  ["a.|)$(}+{bc", "exact", ""],
  ["dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "exact", ""],
  // More of the same logic.
  ["a**", "prefix", ""],
  ["a.**", "prefix", ""],
  ["a*/**", "regexp", "^a[^/]*/.*$"],
  ["\\d", "regexp", "^\\d$"],
  ["[*]", "regexp", "^[[^/]*]$"],
  ["**/a\\.b", "regexp", "^(.*/)?a\\.b$"],
];

describe("IgnoreMatcher.excludes (MatchesOrParentMatches)", () => {
  it.each(patternMatcherTests)("pattern %j, path %j: %s", (pattern, file, expected) => {
    expect(matcherFor([pattern]).excludes(file)).toBe(expected !== "fail");
  });

  it.each(multiPatternTests)("patterns %j, path %j: excluded=%j", (patterns, file, excluded) => {
    expect(matcherFor(patterns).excludes(file)).toBe(excluded);
  });

  it.each(patternMatcherMatchTests)("Matches(%j, %j) = %j", (pattern, file, expected) => {
    if (expected === "error") {
      expect(() => matcherFor([pattern])).toThrow(DockerignoreError);
    } else {
      expect(matcherFor([pattern]).excludes(file)).toBe(expected);
    }
  });

  it.each(compileTests)("compiles %j as %s %s", (pattern, kind, goRegexp) => {
    const compiled = compileIgnorePattern(pattern);
    expect(compiled.kind).toBe(kind);
    expect(compiled.goRegexp).toBe(goRegexp === "" ? undefined : goRegexp);
  });
});

// Docker compiles patterns to Go regexps; these pin down what that means.
const regexpQuirkTests: readonly (readonly [pattern: string, path: string, excluded: boolean])[] = [
  ["\\d", "5", true], // Go's \d, not a literal 'd'
  ["\\d", "d", false],
  ["file\\w", "file_", true],
  ["file\\w", "file-", false],
  ["a\\sb", "a\tb", true],
  ["a\\sb", "a\u00a0b", false], // Go's \s is ASCII only
  ["[\\d]", "7", true],
  ["[[:alpha:]]", "q", true],
  ["[[:alpha:]]", "[", false],
  ["[[:^alpha:]]", "1", true],
  ["[[:^alpha:]]", "a", false],
  ["[[:digit:][:upper:]]", "Q", true],
  ["[*]", "]", true], // "[" + "[^/]*" + "]": a class, a star, then ']'
  ["[*]", "[^]", true],
  ["[*]", "*", false],
  ["[?]", "/]", true],
  ["[?]", "?", false],
  ["[**]", "*", true],
  ["[**]", "(", true],
  ["\\x41", "A", true],
  ["\\101", "A", true],
  ["\\0", "\0", true],
  ["a\\nb", "a\nb", true],
  ["a\\tb", "a\tb", true],
  ["a\\.b", "a.b", true],
  ["a\\.b", "axb", false],
  ["\\Qa*\\E", "a[^/]*", true], // \Q...\E quotes the translated text
  ["\\Qa*\\E", "abc", false],
  ["\\Qab", "ab$", true], // an open \Q swallows the final '$' too
  ["\\Qab", "ab$/more", true],
  ["\\Qab", "ab", false],
  ["a\\b", "a", true], // \b: word boundary
  ["a\\Bb", "ab", true],
  ["\\Aa\\z", "a", true],
  ["\\pL", "é", true],
  ["\\pL", "1", false],
  ["\\PL", "1", true],
  ["\\pN", "٣", true],
  ["[\\pN_]", "_", true],
  ["[\\pN_]", "a", false],
  ["[^\\pL]", "1", true],
  ["\\pC", "\u0001", true],
  ["\\pC", "\u0378", false], // Go's C leaves out unassigned code points
  ["[!a]", "!", true], // '!' does not negate
  ["[!a]", "b", false],
  ["x[^a]y", "x/y", true], // a negated class also matches '/'
  ["a^b", "a^b", true], // no regexp syntax: a plain comparison
  ["a^*", "a^x", false], // in a regexp '^' is an anchor
  ["{a,b}", "{a,b}", true],
  ["{a,b}", "a", false],
  ["a+b", "a+b", true],
  ["a|b", "a", false],
  ["a\\ b", "a b", true],
  ["\\!important", "!important", true],
  ["\\#notes", "#notes", true],
  ["a/**/b", "a/c\nd/b", false], // '.' in "(.*/)?" does not match '\n'
  ["*", "a\nb", true],
  ["**file", "myfile", true], // a leading "**" is a plain suffix test
  ["**/file", "myfile", false],
  ["abc**", "abcdef/x", true], // a trailing "**" after plain text is a prefix test
  ["?", "😀", true],
  ["??", "😀", false],
  ["A", "a", false],
];

describe("Go regexp behaviour of patterns", () => {
  it.each(regexpQuirkTests)("pattern %j, path %j: excluded=%j", (pattern, file, excluded) => {
    expect(matcherFor([pattern]).excludes(file)).toBe(excluded);
  });
});

describe("rule semantics", () => {
  it("excludes everything below a matching directory", () => {
    const matcher = matcherFor(["node_modules", "build/"]);
    expect(matcher.excludes("node_modules")).toBe(true);
    expect(matcher.excludes("node_modules/a/b/c.js")).toBe(true);
    expect(matcher.excludes("build/out.o")).toBe(true);
    expect(matcher.excludes("src/node_modules/x")).toBe(false); // patterns are anchored at the root
    expect(matcher.excludes("node_modules2")).toBe(false);
  });

  it("lets later lines override earlier ones", () => {
    const matcher = matcherFor(["*.md", "!README*.md", "README-secret.md"]);
    expect(matcher.excludes("CHANGELOG.md")).toBe(true);
    expect(matcher.excludes("README.md")).toBe(false);
    expect(matcher.excludes("README-secret.md")).toBe(true);
    const reordered = matcherFor(["*.md", "README-secret.md", "!README*.md"]);
    expect(reordered.excludes("README-secret.md")).toBe(false);
  });

  it("re-includes a file inside an excluded directory", () => {
    const matcher = matcherFor(["docs", "!docs/README.md"]);
    expect(matcher.excludes("docs")).toBe(true);
    expect(matcher.excludes("docs/guide.md")).toBe(true);
    expect(matcher.excludes("docs/README.md")).toBe(false);
  });

  it("cannot re-include below a directory excluded again later", () => {
    const matcher = matcherFor(["docs", "!docs/api", "docs/api/internal"]);
    expect(matcher.excludes("docs/api/public.md")).toBe(false);
    expect(matcher.excludes("docs/api/internal/x.md")).toBe(true);
  });

  it("follows the examples of Docker's documentation", () => {
    const matcher = matcherFor(["# comment", "*/temp*", "*/*/temp*", "temp?"]);
    expect(matcher.excludes("somedir/temporary.txt")).toBe(true);
    expect(matcher.excludes("somedir/temp")).toBe(true);
    expect(matcher.excludes("somedir/subdir/temporary.txt")).toBe(true);
    expect(matcher.excludes("tempa")).toBe(true);
    expect(matcher.excludes("temp")).toBe(false);
    expect(matcher.excludes("temporary.txt")).toBe(false);
    expect(matcher.excludes("a/b/c/temp")).toBe(false);
    expect(matcherFor(["**/*.go"]).excludes("a/b/main.go")).toBe(true);
  });

  it("treats a leading slash as the context root", () => {
    const matcher = matcherFor(["/secret", "!/secret/public"]);
    expect(matcher.excludes("secret/key")).toBe(true);
    expect(matcher.excludes("secret/public")).toBe(false);
  });

  it("cleans the queried path and never excludes the context root", () => {
    const matcher = matcherFor(["**"]);
    expect(matcher.excludes(".")).toBe(false);
    expect(matcher.excludes("")).toBe(false);
    expect(matcher.excludes("./")).toBe(false);
    const plain = matcherFor(["a/b"]);
    expect(plain.excludes("./a/b")).toBe(true);
    expect(plain.excludes("a/x/../b/")).toBe(true);
    expect(plain.excludes("a//b/c")).toBe(true);
  });

  it("excludes nothing without rules", () => {
    expect(new IgnoreMatcher([]).excludes("anything")).toBe(false);
  });

  it("accepts rules built by hand and reports bad ones", () => {
    const matcher = new IgnoreMatcher([
      { pattern: "./tmp/", exclusion: false, line: 1 },
      { pattern: "tmp/keep", exclusion: true, line: 2 },
    ]);
    expect(matcher.excludes("tmp/x")).toBe(true);
    expect(matcher.excludes("tmp/keep")).toBe(false);
    expect(() => new IgnoreMatcher([{ pattern: "[", exclusion: false, line: 7 }], "my.ignore")).toThrow(
      /^my\.ignore:7: invalid pattern/,
    );
  });
});

// [patterns, directory, must the walker descend into it?]
const descendTests: readonly (readonly [patterns: readonly string[], dir: string, descend: boolean])[] = [
  [["docs"], "docs", false],
  [["docs", "!docs/README.md"], "docs", true],
  [["docs", "!docs/README.md"], "other", false],
  [["docs", "!docs/README.md"], "docs/sub", false],
  [["a", "!a/b/c"], "a", true],
  [["a", "!a/b/c"], "a/b", true],
  [["a", "!a/b/c"], "a/b/c", true],
  [["a", "!a/b/c"], "a/bc", false],
  [["a", "!a/**"], "a", true], // a trailing "/**" or "/*" is ignored
  [["a", "!a/*"], "a", true],
  [["a", "!b/**"], "a", false],
  [["*", "!*.md"], "src", true], // any wildcard exception: always descend
  [["*", "!**/keep"], "src/deep", true],
  [["*", "!src\\/x"], "lib", true], // escapes count as wildcards too
  [["a", "!a"], "./a/", true],
];

describe("IgnoreMatcher.mayReincludeBelow (BuildKit's directory pruning)", () => {
  it.each(descendTests)("patterns %j, dir %j: descend=%j", (patterns, dir, descend) => {
    expect(matcherFor(patterns).mayReincludeBelow(dir)).toBe(descend);
  });
});

// Speed is measured in bench/; here a blow-up would show as a test timeout.
describe("large contexts", () => {
  it("matches a 10,000-file context", () => {
    const matcher = matcherFor([
      "node_modules",
      "**/*.log",
      "*.tmp",
      "build/**",
      "!build/keep/**",
      "docs/*/draft-*",
      "**/.DS_Store",
      "coverage",
      "[Tt]emp",
      "**/__pycache__",
      "!**/important.log",
      "secret?.txt",
    ]);
    const files = Array.from({ length: 10_000 }, (_, i) => `src/module${i % 100}/sub${i % 7}/file${i}.${["ts", "log", "tmp", "md"][i % 4]}`);
    let excluded = 0;
    for (const file of files) if (matcher.excludes(file)) excluded++;
    expect(excluded).toBe(2_500);
  });
});

describe("findDockerignore / loadDockerignore", () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "tsbuild-dockerignore-"));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function write(relPath: string, content: string): Promise<string> {
    const full = path.join(root, relPath);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, content);
    return full;
  }

  it("finds nothing when there is no ignore file", async () => {
    const dockerfile = await write("Dockerfile", "FROM scratch\n");
    expect(await findDockerignore(root, dockerfile)).toBeUndefined();
    expect((await loadDockerignore(root, dockerfile)).excludes("anything")).toBe(false);
  });

  it("uses <context>/.dockerignore", async () => {
    const dockerfile = await write("Dockerfile", "FROM scratch\n");
    const ignore = await write(".dockerignore", "*.log\n");
    expect(await findDockerignore(root, dockerfile)).toBe(ignore);
    const matcher = await loadDockerignore(root, dockerfile);
    expect(matcher.excludes("app.log")).toBe(true);
    expect(matcher.excludes("app.ts")).toBe(false);
  });

  it("prefers <Dockerfile>.dockerignore beside the Dockerfile", async () => {
    await write(".dockerignore", "*.log\n");
    const dockerfile = await write("build/app.Dockerfile", "FROM scratch\n");
    const specific = await write("build/app.Dockerfile.dockerignore", "*.ts\n");
    expect(await findDockerignore(root, dockerfile)).toBe(specific);
    const matcher = await loadDockerignore(root, dockerfile);
    expect(matcher.excludes("app.ts")).toBe(true);
    expect(matcher.excludes("app.log")).toBe(false);
  });

  it("applies the rule to the default name too (Dockerfile.dockerignore)", async () => {
    await write(".dockerignore", "a\n");
    const dockerfile = await write("Dockerfile", "FROM scratch\n");
    const specific = await write("Dockerfile.dockerignore", "b\n");
    expect(await findDockerignore(root, dockerfile)).toBe(specific);
  });

  it("ignores a directory named like an ignore file", async () => {
    const dockerfile = await write("Dockerfile", "FROM scratch\n");
    await mkdir(path.join(root, "Dockerfile.dockerignore"));
    const ignore = await write(".dockerignore", "x\n");
    expect(await findDockerignore(root, dockerfile)).toBe(ignore);
  });

  it("reports parse errors with the file path and line", async () => {
    const dockerfile = await write("Dockerfile", "FROM scratch\n");
    const ignore = await write(".dockerignore", "ok\r\n\r\nbad[\r\n");
    await expect(loadDockerignore(root, dockerfile)).rejects.toThrow(`${ignore}:3: invalid pattern "bad["`);
  });
});
