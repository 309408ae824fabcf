import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  expandWord,
  expandWords,
  expandWordWithMatches,
  ShellExpansionError,
  type ShellEnv,
  type ShellLexOptions,
} from "../../src/parser/shell-words.ts";

/** Expands, turning a ShellExpansionError into the string "error". */
function expandOrError(word: string, env: ShellEnv, options?: ShellLexOptions): string {
  try {
    return expandWord(word, env, options);
  } catch (error) {
    if (error instanceof ShellExpansionError) return "error";
    throw error;
  }
}

function expandWordsOrError(word: string, env: ShellEnv, options?: ShellLexOptions): string[] {
  try {
    return expandWords(word, env, options);
  } catch (error) {
    if (error instanceof ShellExpansionError) return ["error"];
    throw error;
  }
}

function caughtError(run: () => unknown): ShellExpansionError {
  try {
    run();
  } catch (error) {
    if (error instanceof ShellExpansionError) return error;
    throw error;
  }
  throw new Error("expected a ShellExpansionError");
}

/** Windows matches variable names case-insensitively. */
function caseInsensitive(env: ReadonlyMap<string, string>): ShellEnv {
  const byUpperName = new Map([...env].map(([name, value]) => [name.toUpperCase(), value]));
  return (name) => byUpperName.get(name.toUpperCase());
}

// ---------------------------------------------------------------------------
// BuildKit's frontend/dockerfile/shell/envVarTest: [platform, input, expected].
// Platform A = all, U = Unix, W = Windows. "error" means expansion must fail.

const ENV_VAR_TEST_ENV = new Map([
  ["PWD", "/home"],
  ["SHELL", "bash"],
  ["KOREAN", "한국어"],
  ["NULL", ""],
]);

const ENV_VAR_TEST: ReadonlyArray<readonly [platform: "A" | "U" | "W", input: string, expected: string]> = [
  ["A", "hello", "hello"],
  ["A", "he'll'o", "hello"],
  ["A", "he'llo", "error"],
  ["A", "he\\'llo", "he'llo"],
  ["A", "he\\\\'llo", "error"],
  ["A", "abc\\tdef", "abctdef"],
  ["A", "\"abc\\tdef\"", "abc\\tdef"],
  ["A", "\"abc\\\\tdef\"", "abc\\tdef"],
  ["A", "'abc\\tdef'", "abc\\tdef"],
  ["A", "hello\\", "hello"],
  ["A", "hello\\\\", "hello\\"],
  ["A", "\"hello", "error"],
  ["A", "\"hello\\\"", "error"],
  ["A", "\"hel'lo\"", "hel'lo"],
  ["A", "'hello", "error"],
  ["A", "'hello\\'", "hello\\"],
  ["A", "'hello\\there'", "hello\\there"],
  ["A", "'hello\\\\there'", "hello\\\\there"],
  ["A", "\"''\"", "''"],
  ["A", "$.", "$."],
  ["A", "he$1x", "hex"],
  ["A", "he$.x", "he$.x"],
  ["U", "he$pwd.", "he."],
  ["W", "he$pwd.", "he/home."],
  ["A", "he$PWD", "he/home"],
  ["A", "he\\$PWD", "he$PWD"],
  ["A", "he\\\\$PWD", "he\\/home"],
  ["A", "\"he\\$PWD\"", "he$PWD"],
  ["A", "\"he\\\\$PWD\"", "he\\/home"],
  ["A", "\\${}", "${}"],
  ["A", "\\${}aaa", "${}aaa"],
  ["A", "he\\${}", "he${}"],
  ["A", "he\\${}xx", "he${}xx"],
  ["A", "${}", "error"],
  ["A", "${}aaa", "error"],
  ["A", "he${}", "error"],
  ["A", "he${}xx", "error"],
  ["A", "he${hi}", "he"],
  ["A", "he${hi}xx", "hexx"],
  ["A", "he${PWD}", "he/home"],
  ["A", "he${.}", "error"],
  ["A", "he${XXX:-000}xx", "he000xx"],
  ["A", "he${PWD:-000}xx", "he/homexx"],
  ["A", "he${XXX:-$PWD}xx", "he/homexx"],
  ["A", "he${XXX:-${PWD:-yyy}}xx", "he/homexx"],
  ["A", "he${XXX:-${YYY:-yyy}}xx", "heyyyxx"],
  ["A", "he${XXX:YYY}", "error"],
  ["A", "he${XXX?}", "error"],
  ["A", "he${XXX:?}", "error"],
  ["A", "he${PWD?}", "he/home"],
  ["A", "he${PWD:?}", "he/home"],
  ["A", "he${NULL?}", "he"],
  ["A", "he${NULL:?}", "error"],
  ["A", "he${XXX:+${PWD}}xx", "hexx"],
  ["A", "he${PWD:+${XXX}}xx", "hexx"],
  ["A", "he${PWD:+${SHELL}}xx", "hebashxx"],
  ["A", "he${XXX:+000}xx", "hexx"],
  ["A", "he${PWD:+000}xx", "he000xx"],
  ["A", "'he${XX}'", "he${XX}"],
  ["A", "\"he${PWD}\"", "he/home"],
  ["A", "\"he'$PWD'\"", "he'/home'"],
  ["A", "\"$PWD\"", "/home"],
  ["A", "'$PWD'", "$PWD"],
  ["A", "'\\$PWD'", "\\$PWD"],
  ["A", "'\"hello\"'", "\"hello\""],
  ["A", "he\\$PWD", "he$PWD"],
  ["A", "\"he\\$PWD\"", "he$PWD"],
  ["A", "'he\\$PWD'", "he\\$PWD"],
  ["A", "he${PWD", "error"],
  ["A", "he${PWD:=000}xx", "error"],
  ["A", "he${PWD:+${PWD}:}xx", "he/home:xx"],
  ["A", "he${XXX:-\\$PWD:}xx", "he$PWD:xx"],
  ["A", "he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"],
  ["A", "안녕하세요", "안녕하세요"],
  ["A", "안'녕'하세요", "안녕하세요"],
  ["A", "안'녕하세요", "error"],
  ["A", "안녕\\'하세요", "안녕'하세요"],
  ["A", "안\\\\'녕하세요", "error"],
  ["A", "안녕\\t하세요", "안녕t하세요"],
  ["A", "\"안녕\\t하세요\"", "안녕\\t하세요"],
  ["A", "'안녕\\t하세요", "error"],
  ["A", "안녕하세요\\", "안녕하세요"],
  ["A", "안녕하세요\\\\", "안녕하세요\\"],
  ["A", "\"안녕하세요", "error"],
  ["A", "\"안녕하세요\\\"", "error"],
  ["A", "\"안녕'하세요\"", "안녕'하세요"],
  ["A", "'안녕하세요", "error"],
  ["A", "'안녕하세요\\'", "안녕하세요\\"],
  ["A", "안녕$1x", "안녕x"],
  ["A", "안녕$.x", "안녕$.x"],
  ["U", "안녕$pwd.", "안녕."],
  ["W", "안녕$pwd.", "안녕/home."],
  ["A", "안녕$PWD", "안녕/home"],
  ["A", "안녕\\$PWD", "안녕$PWD"],
  ["A", "안녕\\\\$PWD", "안녕\\/home"],
  ["A", "안녕\\${}", "안녕${}"],
  ["A", "안녕\\${}xx", "안녕${}xx"],
  ["A", "안녕${}", "error"],
  ["A", "안녕${}xx", "error"],
  ["A", "안녕${hi}", "안녕"],
  ["A", "안녕${hi}xx", "안녕xx"],
  ["A", "안녕${PWD}", "안녕/home"],
  ["A", "안녕${.}", "error"],
  ["A", "안녕${XXX:-000}xx", "안녕000xx"],
  ["A", "안녕${PWD:-000}xx", "안녕/homexx"],
  ["A", "안녕${XXX:-$PWD}xx", "안녕/homexx"],
  ["A", "안녕${XXX:-${PWD:-yyy}}xx", "안녕/homexx"],
  ["A", "안녕${XXX:-${YYY:-yyy}}xx", "안녕yyyxx"],
  ["A", "안녕${XXX:YYY}", "error"],
  ["A", "안녕${XXX:+${PWD}}xx", "안녕xx"],
  ["A", "안녕${PWD:+${XXX}}xx", "안녕xx"],
  ["A", "안녕${PWD:+${SHELL}}xx", "안녕bashxx"],
  ["A", "안녕${XXX:+000}xx", "안녕xx"],
  ["A", "안녕${PWD:+000}xx", "안녕000xx"],
  ["A", "'안녕${XX}'", "안녕${XX}"],
  ["A", "\"안녕${PWD}\"", "안녕/home"],
  ["A", "\"안녕'$PWD'\"", "안녕'/home'"],
  ["A", "'\"안녕\"'", "\"안녕\""],
  ["A", "안녕\\$PWD", "안녕$PWD"],
  ["A", "\"안녕\\$PWD\"", "안녕$PWD"],
  ["A", "'안녕\\$PWD'", "안녕\\$PWD"],
  ["A", "안녕${PWD", "error"],
  ["A", "안녕${PWD:=000}xx", "error"],
  ["A", "안녕${PWD:+${PWD}:}xx", "안녕/home:xx"],
  ["A", "안녕${XXX:-\\$PWD:}xx", "안녕$PWD:xx"],
  ["A", "안녕${XXX:-\\${PWD}z}xx", "안녕${PWDz}xx"],
  ["A", "$KOREAN", "한국어"],
  ["A", "안녕$KOREAN", "안녕한국어"],
  ["A", "${{aaa}", "error"],
  ["A", "${aaa}}", "}"],
  ["A", "${aaa", "error"],
  ["A", "${{aaa:-bbb}", "error"],
  ["A", "${aaa:-bbb}}", "bbb}"],
  ["A", "${aaa:-bbb", "error"],
  ["A", "${aaa:-bbb}", "bbb"],
  ["A", "${aaa:-${bbb:-ccc}}", "ccc"],
  ["A", "${aaa:-bbb ${foo}", "error"],
  ["A", "${aaa:-bbb {foo}", "bbb {foo"],
  ["A", "${:}", "error"],
  ["A", "${:-bbb}", "error"],
  ["A", "${:+bbb}", "error"],
  ["A", "$1", ""],
  ["A", "${1}", ""],
  ["A", "${1:+bbb}", ""],
  ["A", "${1:-bbb}", "bbb"],
  ["A", "$2", ""],
  ["A", "${2}", ""],
  ["A", "${2:+bbb}", ""],
  ["A", "${2:-bbb}", "bbb"],
  ["A", "$3", ""],
  ["A", "${3}", ""],
  ["A", "${3:+bbb}", ""],
  ["A", "${3:-bbb}", "bbb"],
  ["A", "$4", ""],
  ["A", "${4}", ""],
  ["A", "${4:+bbb}", ""],
  ["A", "${4:-bbb}", "bbb"],
  ["A", "$5", ""],
  ["A", "${5}", ""],
  ["A", "${5:+bbb}", ""],
  ["A", "${5:-bbb}", "bbb"],
  ["A", "$6", ""],
  ["A", "${6}", ""],
  ["A", "${6:+bbb}", ""],
  ["A", "${6:-bbb}", "bbb"],
  ["A", "$7", ""],
  ["A", "${7}", ""],
  ["A", "${7:+bbb}", ""],
  ["A", "${7:-bbb}", "bbb"],
  ["A", "$8", ""],
  ["A", "${8}", ""],
  ["A", "${8:+bbb}", ""],
  ["A", "${8:-bbb}", "bbb"],
  ["A", "$9", ""],
  ["A", "${9}", ""],
  ["A", "${9:+bbb}", ""],
  ["A", "${9:-bbb}", "bbb"],
  ["A", "$999", ""],
  ["A", "${999}", ""],
  ["A", "${999:+bbb}", ""],
  ["A", "${999:-bbb}", "bbb"],
  ["A", "$999aaa", "aaa"],
  ["A", "${999}aaa", "aaa"],
  ["A", "${999:+bbb}aaa", "aaa"],
  ["A", "${999:-bbb}aaa", "bbbaaa"],
  ["A", "$001", ""],
  ["A", "${001}", ""],
  ["A", "${001:+bbb}", ""],
  ["A", "${001:-bbb}", "bbb"],
  ["A", "$001aaa", "aaa"],
  ["A", "${001}aaa", "aaa"],
  ["A", "${001:+bbb}aaa", "aaa"],
  ["A", "${001:-bbb}aaa", "bbbaaa"],
  ["A", "$@", ""],
  ["A", "${@}", ""],
  ["A", "${@:+bbb}", ""],
  ["A", "${@:-bbb}", "bbb"],
  ["A", "$@@@", "@@"],
  ["A", "$@aaa", "aaa"],
  ["A", "${@}aaa", "aaa"],
  ["A", "${@:+bbb}aaa", "aaa"],
  ["A", "${@:-bbb}aaa", "bbbaaa"],
  ["A", "$*", ""],
  ["A", "${*}", ""],
  ["A", "${*:+bbb}", ""],
  ["A", "${*:-bbb}", "bbb"],
  ["A", "$#", ""],
  ["A", "${#}", ""],
  ["A", "${#:+bbb}", ""],
  ["A", "${#:-bbb}", "bbb"],
  ["A", "$?", ""],
  ["A", "${?}", ""],
  ["A", "${?:+bbb}", ""],
  ["A", "${?:-bbb}", "bbb"],
  ["A", "$-", ""],
  ["A", "${-}", ""],
  ["A", "${-:+bbb}", ""],
  ["A", "${-:-bbb}", "bbb"],
  ["A", "$$", ""],
  ["A", "${$}", ""],
  ["A", "${$:+bbb}", ""],
  ["A", "${$:-bbb}", "bbb"],
  ["A", "$!", ""],
  ["A", "${!}", ""],
  ["A", "${!:+bbb}", ""],
  ["A", "${!:-bbb}", "bbb"],
  ["A", "$0", ""],
  ["A", "${0}", ""],
  ["A", "${0:+bbb}", ""],
  ["A", "${0:-bbb}", "bbb"],
];

describe("envVarTest vectors", () => {
  const unixRows = ENV_VAR_TEST.filter(([platform]) => platform !== "W");
  const windowsRows = ENV_VAR_TEST.filter(([platform]) => platform !== "U");

  it.each(unixRows)("%s| %s", (_platform, input, expected) => {
    expect(expandOrError(input, ENV_VAR_TEST_ENV)).toBe(expected);
  });

  it.each(windowsRows)("%s| %s (case-insensitive names)", (_platform, input, expected) => {
    expect(expandOrError(input, caseInsensitive(ENV_VAR_TEST_ENV))).toBe(expected);
  });
});

// ---------------------------------------------------------------------------
// BuildKit's frontend/dockerfile/shell/wordsTest, for word splitting. ENV rows
// add variables for the rows after them; ["error"] means expansion must fail.

type WordsRow = { env: string } | { input: string; expected: string[] };

const WORDS_TEST: readonly WordsRow[] = [
  { input: "hello", expected: ["hello"] },
  { input: "hello${hi}bye", expected: ["hellobye"] },
  { env: "hi=hi" },
  { input: "hello${hi}bye", expected: ["hellohibye"] },
  { env: "space=abc  def" },
  { input: "hello${space}bye", expected: ["helloabc","defbye"] },
  { input: "hello\"${space}\"bye", expected: ["helloabc  defbye"] },
  { input: "hello \"${space}\"bye", expected: ["hello","abc  defbye"] },
  { env: "leading=  ab c" },
  { input: "hello${leading}def", expected: ["hello","ab","cdef"] },
  { input: "hello\"${leading}\" def", expected: ["hello  ab c","def"] },
  { input: "hello\"${leading}\"", expected: ["hello  ab c"] },
  { input: "hello${leading}", expected: ["hello","ab","c"] },
  { env: "trailing=ab c   " },
  { input: "hello${trailing}", expected: ["helloab","c"] },
  { input: "hello${trailing}d", expected: ["helloab","c","d"] },
  { input: "hello\"${trailing}\"d", expected: ["helloab c   d"] },
  { input: "hel\"lo${trailing}\"", expected: ["helloab c   "] },
  { input: "hello\" there  \"", expected: ["hello there  "] },
  { input: "hello there", expected: ["hello","there"] },
  { input: "hello\\ there", expected: ["hello there"] },
  { input: "hello\" there", expected: ["error"] },
  { input: "hello\\\" there", expected: ["hello\"","there"] },
  { input: "hello\"\\\\there\"", expected: ["hello\\there"] },
  { input: "hello\"\\there\"", expected: ["hello\\there"] },
  { input: "hello'\\\\there'", expected: ["hello\\\\there"] },
  { input: "hello'\\there'", expected: ["hello\\there"] },
  { input: "hello'$there'", expected: ["hello$there"] },
];

function wordsVectors(): Array<{ input: string; expected: string[]; env: Map<string, string> }> {
  const env = new Map<string, string>();
  const vectors = [];
  for (const row of WORDS_TEST) {
    if ("env" in row) {
      const equals = row.env.indexOf("=");
      env.set(row.env.slice(0, equals), row.env.slice(equals + 1));
    } else {
      vectors.push({ ...row, env: new Map(env) });
    }
  }
  return vectors;
}

describe("wordsTest vectors", () => {
  it.each(wordsVectors())("$input", ({ input, expected, env }) => {
    expect(expandWordsOrError(input, env)).toEqual(expected);
  });
});

// ---------------------------------------------------------------------------
// BuildKit's lex_test.go TestProcessWithMatches.

interface MatchesVector {
  input: string;
  env: Record<string, string>;
  expected?: string;
  error?: true;
  matched?: string[];
  unmatched?: string[];
}

const SOME_ENV = { FOO: "xxx", BAR: "" };

const PROCESS_WITH_MATCHES: readonly MatchesVector[] = [
  { input: "x", env: { DUMMY: "dummy" }, expected: "x" },
  { input: "x ${UNUSED}", env: { DUMMY: "dummy" }, expected: "x ", unmatched: ["UNUSED"] },
  { input: "x ${FOO}", env: { FOO: "y" }, expected: "x y", matched: ["FOO"] },
  {
    input: "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
    env: SOME_ENV,
    expected: "xxx  ccc",
    matched: ["FOO", "BAR"],
    unmatched: ["BAZ"],
  },
  {
    input: "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
    env: SOME_ENV,
    expected: "xxx bbb ccc",
    matched: ["FOO", "BAR"],
    unmatched: ["BAZ"],
  },
  { input: "${FOO:-}", env: SOME_ENV, expected: "xxx", matched: ["FOO"] },
  { input: "${FOO:-}", env: {}, expected: "", unmatched: ["FOO"] },
  {
    input: "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
    env: SOME_ENV,
    expected: "aaa bbb ",
    matched: ["FOO", "BAR"],
    unmatched: ["BAZ"],
  },
  {
    input: "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
    env: SOME_ENV,
    expected: "aaa  ",
    matched: ["FOO", "BAR"],
    unmatched: ["BAZ"],
  },
  { input: "${FOO?aaa}", env: SOME_ENV, expected: "xxx", matched: ["FOO"] },
  { input: "${BAR?bbb}", env: SOME_ENV, expected: "", matched: ["BAR"] },
  { input: "${BAZ?ccc}", env: SOME_ENV, error: true },
  { input: "${FOO:?aaa}", env: SOME_ENV, expected: "xxx", matched: ["FOO"] },
  { input: "${BAR:?bbb}", env: SOME_ENV, error: true },
  { input: "${BAZ:?ccc}", env: SOME_ENV, error: true },
  { input: "${BAZ:?}", env: SOME_ENV, error: true },
  { input: "${FOO=aaa}", env: SOME_ENV, error: true },
  { input: "${FOO=:aaa}", env: SOME_ENV, error: true },
  { input: "${FOO=}", env: {}, error: true },
  // Regular-expression characters are literal; `\}` keeps `}` in the pattern.
  { input: "${FOO#()[]{\\}^$.\\*\\?|\\\\}", env: { FOO: "()[]{}^$.*?|\\x" }, expected: "x", matched: ["FOO"] },
  { input: "${FOO%%\\**}", env: { FOO: "xx**" }, expected: "xx", matched: ["FOO"] },
  { input: "${FOO#*x*y}", env: { FOO: "xxyy" }, expected: "y", matched: ["FOO"] },
  { input: "${FOO#*}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  { input: "${FOO#$BAR}", env: { FOO: "xxyy", BAR: "x" }, expected: "xyy", matched: ["FOO", "BAR"] },
  { input: "${FOO#$BAR}", env: { FOO: "xxyy", BAR: "" }, expected: "xxyy", matched: ["FOO", "BAR"] },
  { input: "${FOO#}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  { input: "${FOO##*x}", env: { FOO: "xxyy" }, expected: "yy", matched: ["FOO"] },
  { input: "${FOO##}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  { input: "${FOO#?\\?}", env: { FOO: "???y" }, expected: "?y", matched: ["FOO"] },
  {
    input: "${ABC:-.}${FOO%x}${ABC:-.}",
    env: { FOO: "xxyy" },
    expected: ".xxyy.",
    matched: ["FOO"],
    unmatched: ["ABC"],
  },
  { input: "${FOO%%\\**\\*}", env: { FOO: "a***yy*" }, expected: "a", matched: ["FOO"] },
  { input: "${FOO%}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  { input: "${FOO%%$BAR}", env: { FOO: "xxyy", BAR: "" }, expected: "xxyy", matched: ["FOO", "BAR"] },
  // Wildcards.
  {
    input: "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
    env: { FOO: "/foo*/*/*.txt", NEEDLE: "\\*/" },
    expected: "/foo.*/*.txt - /foo..*.txt",
    matched: ["FOO", "NEEDLE"],
  },
  // `/` in patterns.
  {
    input: "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
    env: { FOO: "/tmp/tmp/bar.txt", NEEDLE: "/tmp" },
    expected: "/tmp/bar.txt - /bar.txt",
    matched: ["FOO", "NEEDLE"],
  },
  {
    input: "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
    env: { FOO: "/a/foo/b/c.txt", NEEDLE: "/?/", REPLACEMENT: "/" },
    expected: "/foo/b/c.txt - /foo/c.txt",
    matched: ["FOO", "NEEDLE", "REPLACEMENT"],
  },
  {
    input: "${FOO/$NEEDLE/$REPLACEMENT}",
    env: { FOO: "http://google.de", NEEDLE: "http://", REPLACEMENT: "https://" },
    expected: "https://google.de",
    matched: ["FOO", "NEEDLE", "REPLACEMENT"],
  },
  // Escaped separator characters.
  { input: "${FOO//\\//\\/}", env: { FOO: "/tmp/foo.txt" }, expected: "\\/tmp\\/foo.txt", matched: ["FOO"] },
  // Partial or empty patterns: not guaranteed behaviour upstream, but must not crash.
  { input: "${FOO/$BAR/ww}", env: { FOO: "xxyy", BAR: "" }, expected: "wwxxyy", matched: ["FOO", "BAR"] },
  { input: "${FOO//ww}", env: { FOO: "xxyy" }, error: true },
  { input: "${FOO//}", env: { FOO: "xxyy" }, error: true },
  { input: "${FOO///}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  { input: "${FOO///}", env: {}, expected: "", unmatched: ["FOO"] },
];

describe("TestProcessWithMatches vectors", () => {
  it.each(PROCESS_WITH_MATCHES)("$input", (vector) => {
    const env = new Map(Object.entries(vector.env));
    if (vector.error) {
      expect(() => expandWordWithMatches(vector.input, env)).toThrow(ShellExpansionError);
      return;
    }
    const { result, matched, unmatched } = expandWordWithMatches(vector.input, env);
    expect(result).toBe(vector.expected);
    expect([...matched].sort()).toEqual([...(vector.matched ?? [])].sort());
    expect([...unmatched].sort()).toEqual([...(vector.unmatched ?? [])].sort());
  });
});

describe("TestShellParserMandatoryEnvVars vectors", () => {
  const setEnv = new Map([["VAR", "plain"], ["ARG", "x"]]);
  const emptyEnv = new Map([["VAR", ""], ["ARG", "x"]]);
  const unsetEnv = new Map([["ARG", "x"]]);
  const noEmpty = "${VAR:?message here$ARG}";
  const noUnset = "${VAR?message here$ARG}";

  it("${VAR:?...} rejects empty and unset values", () => {
    expect(expandWord(noEmpty, setEnv)).toBe("plain");
    expect(() => expandWord(noEmpty, emptyEnv)).toThrow("message herex");
    expect(() => expandWord(noEmpty, unsetEnv)).toThrow("message herex");
  });

  it("${VAR?...} rejects only unset values", () => {
    expect(expandWord(noUnset, setEnv)).toBe("plain");
    expect(expandWord(noUnset, emptyEnv)).toBe("");
    expect(() => expandWord(noUnset, unsetEnv)).toThrow("message herex");
  });
});

describe("TestProcessWithMatchesPlatform vectors", () => {
  const release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
  const base = { VERSION: "v1.2.3", TARGETOS: "linux" };
  it.each([
    [{ ...base, TARGETARCH: "arm", TARGETVARIANT: "v7" }, "something-v1.2.3.linux-arm-v7.tar.gz"],
    [{ ...base, TARGETARCH: "arm64", TARGETVARIANT: "" }, "something-v1.2.3.linux-arm64.tar.gz"],
    [{ ...base, TARGETARCH: "arm64" }, "something-v1.2.3.linux-arm64.tar.gz"],
  ])("%o", (env, expected) => {
    expect(expandWordWithMatches(release, new Map(Object.entries(env))).result).toBe(expected);
  });
});

// BuildKit's TestConvertShellPatternToRegex and TestReversePattern cases test
// internals; here each case is checked through the expansion it drives.
describe("pattern conversion vectors", () => {
  const trimPrefix = (value: string, pattern: string, greedy = true): string =>
    expandOrError(greedy ? "${V##$P}" : "${V#$P}", new Map([["V", value], ["P", pattern]]));
  const trimSuffix = (value: string, pattern: string): string =>
    expandOrError("${V%$P}", new Map([["V", value], ["P", pattern]]));

  it.each([
    ["*", "anything", ""],
    ["?", "ab", "b"],
    ["\\*", "*x", "x"],
    ["(()[]{\\}^$.\\*\\?|\\\\", "(()[]{}^$.*?|\\x", "x"],
  ])("%s is a valid pattern", (pattern, value, expected) => {
    expect(trimPrefix(value, pattern)).toBe(expected);
  });

  it.each(["\\", "\\x", "\\\\\\"])("%s is an invalid pattern", (pattern) => {
    expect(trimPrefix("whatever", pattern)).toBe("error");
  });

  // `%` matches the reversed pattern, keeping `\x` pairs in order.
  it.each([
    ["a\\*c", "za*c", "z"],
    ["\\\\\\ab", "zab", "error"],
    ["ab\\", "zab", "error"],
    ["👽\\🚀🖖", "z👽🚀🖖", "error"],
    ["\\\\b", "z\\b", "z"],
  ])("%s reverses correctly for %%", (pattern, value, expected) => {
    expect(trimSuffix(value, pattern)).toBe(expected);
  });
});

// ---------------------------------------------------------------------------
// Further behaviour, vectors written from BuildKit's lex.go semantics.

const ENV = new Map([
  ["PWD", "/home"],
  ["EMPTY", ""],
  ["SPACED", " x  y "],
  ["한국", "korea"],
  ["𝐀", "bold"],
  ["NL", "a\nb"],
]);

describe("variables", () => {
  it.each([
    ["$", "$"],
    ["a$", "a$"],
    ["$ b", "$ b"],
    ['"$"', "$"],
    ["$'x'", "$x"],
    ['$"x"', "$x"],
    ["$.", "$."],
    ["$12ab", "ab"],
    ["$٣x", "x"],
    ["$한국!", "korea!"],
    ["${한국}", "korea"],
    ["${𝐀}", "bold"],
    ["$PWD_", ""],
    ["${PWD}_", "/home_"],
    ["$EMPTY|${EMPTY-d}|${EMPTY:-d}|${EMPTY+a}|${EMPTY:+a}", "||d|a|"],
    ["\uFEFF$PWD", "/home"],
    ["a\uFEFFb", "a\uFEFFb"],
  ])("%s → %s", (input, expected) => {
    expect(expandWord(input, ENV)).toBe(expected);
  });

  it("accepts a lookup function", () => {
    const seen: string[] = [];
    const lookup = (name: string) => {
      seen.push(name);
      return name === "A" ? "1" : undefined;
    };
    expect(expandWord("$A${B:-$A}", lookup)).toBe("11");
    expect(seen).toEqual(["A", "A", "B"]);
  });

  it("reports matched and unmatched names, including nested and positional ones", () => {
    const { result, matched, unmatched } = expandWordWithMatches("${NOPE:-${PWD}}$1$@", ENV);
    expect(result).toBe("/home");
    expect([...matched]).toEqual(["PWD"]);
    expect([...unmatched].sort()).toEqual(["1", "@", "NOPE"]);
  });
});

describe("quotes and escapes", () => {
  it.each([
    ["'a b'", "a b"],
    ["'a\\'", "a\\"],
    ['"a\\"b"', 'a"b'],
    ['"a\\b"', "a\\b"],
    ['"a\\\\b"', "a\\b"],
    ['"\\$PWD"', "$PWD"],
    ["\\$PWD", "$PWD"],
    ["a\\", "a"],
    ["\\😀", "😀"],
    ["${EMPTY:-'}'}", "}"],
    ['${EMPTY:-"a b"}', "a b"],
  ])("%s → %s", (input, expected) => {
    expect(expandWord(input, ENV)).toBe(expected);
  });

  describe("with ` as the escape character", () => {
    it.each([
      ["he`$PWD", "he$PWD"],
      ["C:\\path\\$PWD", "C:\\path\\/home"],
      ['"a`"b"', 'a"b'],
      ['"a`b"', "a`b"],
      ['"a``b"', "a`b"],
      ['"a\\"', "a\\"],
      ["hello`", "hello"],
      ["a`'b", "a'b"],
    ])("%s → %s", (input, expected) => {
      expect(expandWord(input, ENV, { escape: "`" })).toBe(expected);
    });

    it("escapes whitespace against splitting", () => {
      expect(expandWords("a` b c", ENV, { escape: "`" })).toEqual(["a b", "c"]);
    });
  });

  it("keeps quotes with rawQuotes", () => {
    const options = { rawQuotes: true };
    expect(expandWord(`"a"'b'`, ENV, options)).toBe(`"a"'b'`);
    expect(expandWord(`"$PWD"`, ENV, options)).toBe(`"/home"`);
    expect(expandWord(`\${NOPE:-"x"}`, ENV, options)).toBe(`"x"`);
  });

  it("keeps escapes with rawEscapes", () => {
    const options = { rawEscapes: true };
    expect(expandWord("he\\$PWD", ENV, options)).toBe("he\\$PWD");
    expect(expandWord('"a\\"b"', ENV, options)).toBe('a\\"b');
    // An escape before an ordinary character in double quotes comes out doubled.
    expect(expandWord('"a\\b"', ENV, options)).toBe("a\\\\b");
    expect(expandWord("a\\", ENV, options)).toBe("a\\");
    // Defaults (`-`, `+`, `?`) always process escapes.
    expect(expandWord("${NOPE:-a\\b}", ENV, options)).toBe("ab");
  });

  it("treats quotes as ordinary characters with skipProcessQuotes", () => {
    const options = { skipProcessQuotes: true };
    expect(expandWord("'$PWD'", ENV, options)).toBe("'/home'");
    expect(expandWord("'unterminated", ENV, options)).toBe("'unterminated");
    expect(expandWords('"a b"', ENV, options)).toEqual(['"a', 'b"']);
  });
});

describe("skipUnsetEnv", () => {
  it.each([
    ["$NOPE", "$NOPE"],
    ["$1", "$1"],
    ["${NOPE}", "${NOPE}"],
    ["${NOPE:-x}", "${NOPE:-x}"],
    ["${NOPE-x}", "${NOPE-x}"],
    ["${NOPE:+x}", "${NOPE:+x}"],
    ["${NOPE?x}", "${NOPE?x}"],
    ["${NOPE:?}", "${NOPE:?}"],
    ["${NOPE:=x}", "${NOPE:=x}"],
    ["${NOPE#x}", "${NOPE#x}"],
    ["${NOPE%%x}", "${NOPE%%x}"],
    ["${NOPE/a/b}", "${NOPE/a/b}"],
    // A single slash even for `//`: matches BuildKit.
    ["${NOPE//a/b}", "${NOPE/a/b}"],
    ["${NOPE:-$PWD}", "${NOPE:-/home}"],
    ["$PWD${EMPTY}", "/home"],
  ])("%s → %s", (input, expected) => {
    expect(expandWord(input, ENV, { skipUnsetEnv: true })).toBe(expected);
  });
});

describe("patterns", () => {
  const withV = (value: string) => new Map([...ENV, ["V", value]]);

  it.each([
    ["${V%.*}", "file.tar.gz", "file.tar"],
    ["${V%%.*}", "file.tar.gz", "file"],
    ["${V#*.}", "file.tar.gz", "tar.gz"],
    ["${V##*.}", "file.tar.gz", "gz"],
    ["${V#*/}", "a/b/c", "b/c"],
    ["${V##*/}", "a/b/c", "c"],
    ["${V%/*}", "a/b/c", "a/b"],
    // Brackets are literal: BuildKit has no bracket expressions.
    ["${V#[ab]}", "[ab]c", "c"],
    ["${V#[ab]}", "ac", "ac"],
    // `?` is one character, even outside the BMP.
    ["${V#?}", "😀x", "x"],
    ["${V%?}", "x😀", "x"],
    ["${V#??}", "😀x", ""],
    // Wildcards never match a newline.
    ["${V#*b}", "a\nb", "a\nb"],
    ["${V#a?b}", "a\nb", "a\nb"],
    ["${V//?/x}", "a\nb", "x\nx"],
    ["${V##*}", "a\nb", "\nb"],
    // `#` after expansion: a pattern from a variable can select `##`.
    ["${V#$HASHED}", "aab", "b"],
  ])("%s with V=%j → %j", (input, value, expected) => {
    expect(expandWord(input, new Map([...withV(value), ["HASHED", "#*a"]]))).toBe(expected);
  });

  it.each([
    ["${V/*/x}", "abc", "x"],
    // An empty match right after a match is not replaced (Go's ReplaceAll rules).
    ["${V//*/x}", "abc", "x"],
    ["${V//*/x}", "", "x"],
    ["${V///x}", "ab", "xaxbx"],
    ["${V//b*/x}", "abab", "ax"],
    ["${V/b/x}", "abab", "axab"],
    ["${V//b/x}", "abab", "axax"],
    ["${V//b/}", "abab", "aa"],
    ["${V/x/y}", "abab", "abab"],
    ["${V//?/-}", "a😀", "--"],
  ])("%s with V=%j → %j", (input, value, expected) => {
    expect(expandWord(input, withV(value))).toBe(expected);
  });

  it("expands $0 and $$ in replace-all replacements as Go templates, not in single replacements", () => {
    const env = (replacement: string) => new Map([["V", "abcb"], ["R", replacement]]);
    expect(expandWord("${V//b/[$R]}", env("$0"))).toBe("a[b]c[b]");
    expect(expandWord("${V//b?/$R$R}", env("$0"))).toBe("abcbcb");
    expect(expandWord("${V//b/$R}", env("${0}"))).toBe("abcb");
    expect(expandWord("${V//b/$R}", env("$$"))).toBe("a$c$");
    expect(expandWord("${V//b/$R}", env("$1"))).toBe("ac");
    expect(expandWord("${V//b/$R}", env("$00"))).toBe("ac");
    expect(expandWord("${V//b/$R}", env("$x"))).toBe("ac");
    expect(expandWord("${V//b/$R}", env("${x"))).toBe("a${xc${x");
    expect(expandWord("${V//b/$R}", env("$"))).toBe("a$c$");
    expect(expandWord("${V//b/\\$0}", env(""))).toBe("a\\bc\\b");
    expect(expandWord("${V/b/$R}", env("$0"))).toBe("a$0cb");
  });

  it("stays fast on patterns that make backtracking matchers explode", () => {
    const value = "a".repeat(3000);
    const env = new Map([["V", value]]);
    expect(expandWord("${V#*a*a*a*a*a*a*a*a*a*a*a*a*b}", env)).toBe(value);
    expect(expandWord("${V%%*a*a*a*a*a*a*a*a*a*a*a*a*b}", env)).toBe(value);
    expect(expandWord("${V//a*a*a*a*a*a*a*a*b/x}", env)).toBe(value);
  });
});

describe("word splitting", () => {
  it.each([
    ['a "" b', ["a", "b"]],
    ['""', []],
    ["", []],
    ['a""', ["a"]],
    ["'a b' c", ["a b", "c"]],
    ["$SPACED", ["x", "y"]],
    ['"$SPACED"', [" x  y "]],
    ["z${SPACED}z", ["z", "x", "y", "z"]],
    ["a\u00a0b\u0085c\u3000d", ["a", "b", "c", "d"]],
    ["a\uFEFFb", ["a\uFEFFb"]],
    ["a\\ b", ["a b"]],
    ["a\tb\nc", ["a", "b", "c"]],
    ["${EMPTY:-x y}", ["x", "y"]],
  ])("%j → %j", (input, expected) => {
    expect(expandWords(input, ENV)).toEqual(expected);
  });
});

describe("errors", () => {
  it.each([
    ["abc'def", 3, "unexpected end of statement while looking for matching single-quote"],
    ['ab"cd', 2, "unexpected end of statement while looking for matching double-quote"],
    ["x${", 1, "syntax error: missing '}'"],
    ["x${PWD", 1, "syntax error: missing '}'"],
    ["x${PWD:-a", 1, "syntax error: missing '}'"],
    ["x${PWD:-'a}", 1, "syntax error: missing '}'"],
    ["x${}", 1, "syntax error: bad substitution"],
    ["x${:-a}", 1, "syntax error: bad substitution"],
    ["x${{a}", 1, "syntax error: bad substitution"],
    ["${PWD/a", 0, "syntax error: missing '/' in ${}"],
    ["${PWD:=a}", 5, "unsupported modifier (:=) in substitution"],
    ["${PWD:#a}", 6, "unsupported modifier (:#) in substitution"],
    ["${PWD:%a}", 6, "unsupported modifier (:%) in substitution"],
    ["${PWD.}", 5, "unsupported modifier (.) in substitution"],
    ["${#PWD}", 3, "unsupported modifier (P) in substitution"],
    ["${NOPE?}", 0, "NOPE: is not allowed to be unset"],
    ["${EMPTY:?}", 0, "EMPTY: is not allowed to be empty"],
    ["${NOPE:?custom $PWD}", 0, "NOPE: custom /home"],
    ["${PWD#\\x}", 0, "invalid pattern (\\x) in substitution: invalid escape '\\x'"],
  ])("%s fails at %i: %s", (input, offset, reason) => {
    const error = caughtError(() => expandWord(input, ENV));
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ShellExpansionError");
    expect(error.reason).toBe(reason);
    expect(error.offset).toBe(offset);
    expect(error.message).toBe(`failed to process ${JSON.stringify(input)}: ${reason}`);
  });

  it("fails the same way when splitting words or collecting matches", () => {
    expect(() => expandWords("'open", ENV)).toThrow(ShellExpansionError);
    expect(() => expandWordWithMatches("${", ENV)).toThrow(ShellExpansionError);
  });

  it("accepts deep nesting up to the limit, and fails cleanly beyond it", () => {
    const nest = (depth: number, open: string, close: string) => open.repeat(depth) + "x" + close.repeat(depth);
    expect(expandWord(nest(500, "${A:-", "}"), ENV)).toBe("x");
    expect(expandWord(nest(500, '"${A:-', '}"'), ENV)).toBe("x");
    expect(() => expandWord(nest(501, "${A:-", "}"), ENV)).toThrow(ShellExpansionError);
    expect(() => expandWord("${A:-".repeat(200_000), ENV)).toThrow(ShellExpansionError);
    expect(() => expandWord('"${A:-'.repeat(200_000), ENV)).toThrow(ShellExpansionError);
  });
});

// Speed is measured in bench/; here a blow-up would show as a test timeout.
describe("large inputs", () => {
  it("expands a large word", () => {
    const word = "$PWD/${EMPTY:-x}'q'\\ ".repeat(50_000);
    const result = expandWord(word, ENV);
    expect(result.length).toBe("/home/xq ".length * 50_000);
    expect(expandWords(word, ENV)).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------
// Properties.

const SHELL_ALPHABET = fc.constantFrom(
  "$", "{", "}", ":", "-", "+", "?", "#", "%", "/", "=", "\\", "`", '"', "'", "*", "[", "]", "@", "!",
  "a", "B", "_", "1", "0", " ", "\n", "\t", "é", "😀", "\uFEFF", "\u00a0", "\uD800",
);

const OPTIONS = fc.record(
  {
    escape: fc.constantFrom<"\\" | "`">("\\", "`"),
    rawQuotes: fc.boolean(),
    rawEscapes: fc.boolean(),
    skipUnsetEnv: fc.boolean(),
    skipProcessQuotes: fc.boolean(),
  },
  { requiredKeys: [] },
);

const PROPERTY_ENV = new Map([["a", "x y"], ["B", "*"], ["_", ""], ["1", "$0"], ["@", "\\"]]);

/** True when `run` returns a string or a string array, or throws a ShellExpansionError. */
function expandsOrFailsCleanly(run: () => unknown): boolean {
  try {
    const result = run();
    return typeof result === "string" || (Array.isArray(result) && result.every((word) => typeof word === "string"));
  } catch (error) {
    return error instanceof ShellExpansionError;
  }
}

describe("properties", () => {
  const words = fc.oneof(
    fc.string({ unit: SHELL_ALPHABET, maxLength: 40 }),
    fc.string({ unit: "binary", maxLength: 40 }),
  );

  it("produces strings or a ShellExpansionError, never another exception", () => {
    fc.assert(
      fc.property(words, OPTIONS, (word, options) => {
        expect(expandsOrFailsCleanly(() => expandWord(word, PROPERTY_ENV, options))).toBe(true);
        expect(expandsOrFailsCleanly(() => expandWords(word, PROPERTY_ENV, options))).toBe(true);
        expect(expandsOrFailsCleanly(() => expandWordWithMatches(word, PROPERTY_ENV, options).result)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it("leaves text without special characters unchanged", () => {
    const plain = fc.string({ unit: fc.constantFrom("a", "b", " ", "/", "é", "😀", "{", "}", "*"), maxLength: 30 });
    fc.assert(fc.property(plain, (word) => expandWord(word, PROPERTY_ENV) === word));
  });

  // A regular-expression matcher with the same leftmost-first rules as the
  // reference implementation's, on small inputs where backtracking is cheap.
  const patternText = fc.string({ unit: fc.constantFrom("a", "b", "*", "?"), maxLength: 6 });
  const valueText = fc.string({ unit: fc.constantFrom("a", "b", "\n"), maxLength: 10 });

  function patternRegex(pattern: string, greedy: boolean, flags: string): RegExp {
    let source = "";
    for (const ch of pattern) source += ch === "*" ? (greedy ? "[^\\n]*" : "[^\\n]*?") : ch === "?" ? "[^\\n]" : ch;
    return new RegExp(source, flags);
  }

  function referencePrefixTrim(value: string, pattern: string, greedy: boolean): string {
    const match = new RegExp(`^(?:${patternRegex(pattern, greedy, "").source})`, "u").exec(value);
    return match ? value.slice(match[0].length) : value;
  }

  const reverse = (text: string) => [...text].reverse().join("");

  function referenceReplaceAll(value: string, pattern: string, replacement: string): string {
    const regex = patternRegex(pattern, true, "gu");
    let out = "";
    let lastMatchEnd = 0;
    for (let searchPos = 0; searchPos <= value.length; ) {
      regex.lastIndex = searchPos;
      const match = regex.exec(value);
      if (!match) break;
      const start = match.index;
      const end = start + match[0].length;
      out += value.slice(lastMatchEnd, start);
      if (end > lastMatchEnd || start === 0) out += replacement;
      lastMatchEnd = end;
      searchPos = Math.max(searchPos + 1, end);
    }
    return out + value.slice(lastMatchEnd);
  }

  it("matches patterns like a leftmost-first regular-expression engine", () => {
    fc.assert(
      fc.property(valueText, patternText, (value, pattern) => {
        const env = new Map([["V", value], ["P", pattern]]);
        expect(expandWord("${V#$P}", env)).toBe(referencePrefixTrim(value, pattern, false));
        expect(expandWord("${V##$P}", env)).toBe(referencePrefixTrim(value, pattern, true));
        expect(expandWord("${V%$P}", env)).toBe(reverse(referencePrefixTrim(reverse(value), reverse(pattern), false)));
        expect(expandWord("${V%%$P}", env)).toBe(reverse(referencePrefixTrim(reverse(value), reverse(pattern), true)));
        const first = patternRegex(pattern, true, "u").exec(value);
        const replacedFirst = first ? value.slice(0, first.index) + "R" + value.slice(first.index + first[0].length) : value;
        expect(expandWord("${V/$P/R}", env)).toBe(replacedFirst);
        expect(expandWord("${V//$P/R}", env)).toBe(referenceReplaceAll(value, pattern, "R"));
      }),
      { numRuns: 3000 },
    );
  });
});
