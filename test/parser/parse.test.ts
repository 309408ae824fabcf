import { describe, expect, it } from "vitest";
import { DockerfileSyntaxError, parseDockerfile, type Dockerfile, type Instruction } from "../../src/parser/index.ts";

const parse = (text: string): Dockerfile => parseDockerfile(text, { file: "Dockerfile" });
/** The instructions after a leading `FROM scratch`. */
const body = (text: string): Instruction[] => parse(`FROM scratch\n${text}`).instructions.slice(1);
const only = (text: string): Instruction => {
  const [instruction] = body(text);
  if (!instruction) throw new Error("no instruction");
  return instruction;
};

function parseError(text: string): DockerfileSyntaxError {
  try {
    parse(text);
  } catch (error) {
    if (error instanceof DockerfileSyntaxError) return error;
    throw error;
  }
  throw new Error(`expected a syntax error for:\n${text}`);
}

describe("directives", () => {
  it.each([
    ["# syntax=docker/dockerfile:1\nFROM scratch", [["syntax", "docker/dockerfile:1"]]],
    ["#syntax = docker/dockerfile:1.7  \nFROM scratch", [["syntax", "docker/dockerfile:1.7"]]],
    ["# SYNTAX=x\n# Escape=`\nFROM scratch", [["syntax", "x"], ["escape", "`"]]],
    ["  # escape=\\\nFROM scratch", [["escape", "\\"]]],
    ["# check=skip=JSONArgsRecommended;error=true\nFROM scratch", [["check", "skip=JSONArgsRecommended;error=true"]]],
    // Anything that is not a known directive ends the directives.
    ["# a comment\n# syntax=x\nFROM scratch", []],
    ["\n# syntax=x\nFROM scratch", []],
    ["# unknown=1\n# syntax=x\nFROM scratch", []],
    ["FROM scratch\n# syntax=x", []],
    ["# syntax=x\n\n# escape=`\nFROM scratch", [["syntax", "x"]]],
  ])("%j", (text, expected) => {
    expect(parse(text).directives.map((d) => [d.name, d.value])).toEqual(expected);
  });

  it("switches the escape character to backtick", () => {
    const dockerfile = parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo done");
    expect(dockerfile.escape).toBe("`");
    expect(dockerfile.instructions[1]?.args).toEqual(["dir c:\\   && echo done"]);
  });

  it.each([
    ["# escape=x\nFROM scratch", 1, "invalid escape character"],
    ["# syntax=a\n# syntax=b\nFROM scratch", 2, "the syntax directive is given twice"],
    ["# escape=`\n# ESCAPE=`\nFROM scratch", 2, "the escape directive is given twice"],
    ["# check=bogus=1\nFROM scratch", 1, 'unknown option "bogus"'],
    ["# check=error=maybe\nFROM scratch", 1, "check option error takes true or false"],
  ])("rejects %j", (text, line, message) => {
    const error = parseError(text);
    expect(error.span.start.line).toBe(line);
    expect(error.message).toContain(message);
  });
});

describe("lines and continuations", () => {
  it.each([
    ["RUN a \\\n  b", ["a   b"]],
    ["RUN a \\   \n b", ["a  b"]],
    ["RUN a \\\n# comment\n  # indented comment\n b", ["a  b"]],
    ["RUN a \\\r\n b\r\n", ["a  b"]],
    ["RUN a \\", ["a"]],
    ["  run   echo hi  ", ["echo hi"]],
    // The continuation rule does not look at escaped escapes: this line continues.
    ["RUN echo \\\\", ["echo \\"]],
  ])("%j", (text, args) => {
    expect(only(text).args).toEqual(args);
  });

  it("warns about an empty continuation line and skips it", () => {
    const dockerfile = parse("FROM scratch\nRUN a \\\n\n  b");
    expect(dockerfile.instructions[1]?.args).toEqual(["a   b"]);
    expect(dockerfile.warnings.map((w) => [w.code, w.span.start.line])).toEqual([["NoEmptyContinuation", 3]]);
  });

  it("strips a byte-order mark and accepts CRLF files", () => {
    const dockerfile = parse("\ufeff# syntax=x\r\nFROM scratch\r\nCMD [\"a\"]\r\n");
    expect(dockerfile.directives).toHaveLength(1);
    expect(dockerfile.instructions.map((i) => i.args)).toEqual([["scratch"], ["a"]]);
  });

  it("records spans that cover continuation lines", () => {
    const [, run] = parse("FROM scratch\n  RUN a \\\n   b \\\n   c\nCMD x").instructions;
    expect(run?.span).toEqual({ start: { line: 2, column: 3 }, end: { line: 4, column: 5 } });
  });

  it("keeps comments above an instruction", () => {
    expect(only("# first\n# second\nARG A").comments).toEqual(["first", "second"]);
    expect(only("# detached\n#\nARG A").comments).toEqual([]);
  });

  it("is case-insensitive for keywords", () => {
    expect(body("run a\nRuN b\ncopy x y").map((i) => i.keyword)).toEqual(["run", "run", "copy"]);
  });
});

describe("instructions", () => {
  it.each<[string, Partial<Instruction>]>([
    ["RUN echo $HOME", { keyword: "run", args: ["echo $HOME"], json: false }],
    ['RUN ["echo", "a b"]', { args: ["echo", "a b"], json: true }],
    ['RUN [ "echo" , "\\u0041\\n" ]', { args: ["echo", "A\n"], json: true }],
    ["RUN []", { args: [], json: true }],
    // Invalid JSON falls back to shell form, exactly as written.
    ["RUN ['echo', 'x']", { args: ["['echo', 'x']"], json: false }],
    ['RUN ["echo" "x"]', { args: ['["echo" "x"]'], json: false }],
    ['RUN ["a"] && b', { args: ['["a"] && b'], json: false }],
    ['CMD ["a",]', { args: ['["a",]'], json: false }],
    ["CMD", { args: [], json: false }],
    ['ENTRYPOINT ["/bin/app", "--flag"]', { args: ["/bin/app", "--flag"], json: true }],
    ['SHELL ["/bin/bash", "-c"]', { args: ["/bin/bash", "-c"], json: true }],
    ["COPY a b /dest/", { args: ["a", "b", "/dest/"] }],
    ['COPY ["a b", "/dest/"]', { args: ["a b", "/dest/"], json: true }],
    ["ADD --chown=1:1 --chmod=644 https://example.com/x /x", { args: ["https://example.com/x", "/x"] }],
    ["VOLUME /a /b", { args: ["/a", "/b"] }],
    ['VOLUME ["/a", "/b"]', { args: ["/a", "/b"], json: true }],
    // Not JSON as a whole: a whitespace-separated list.
    ['VOLUME /a ["/b", "/c"]', { args: ["/a", '["/b",', '"/c"]'], json: false }],
    ["EXPOSE 80 443/tcp 8000-8002 53/udp", { args: ["80", "443/tcp", "8000-8002", "53/udp"] }],
    ["USER app:app", { args: ["app:app"] }],
    ["WORKDIR /srv/my app", { args: ["/srv/my app"] }],
    ["STOPSIGNAL SIGKILL", { args: ["SIGKILL"] }],
    ["MAINTAINER Jane Doe <jane@example.com>", { args: ["Jane Doe <jane@example.com>"] }],
    ["HEALTHCHECK NONE", { args: ["NONE"] }],
    ["HEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://localhost/ || exit 1", { args: ["CMD", "curl -f http://localhost/ || exit 1"], json: false }],
    ['HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]', { args: ["CMD", "curl", "-f", "http://localhost/"], json: true }],
  ])("%s", (text, expected) => {
    expect(only(text)).toMatchObject(expected);
  });

  it.each([
    ["ENV A=1 B=2", [["A", "1"], ["B", "2"]]],
    ['ENV A="a b" B=\'c d\' C=e\\ f', [["A", '"a b"'], ["B", "'c d'"], ["C", "e\\ f"]]],
    ["ENV A 1 2 3", [["A", "1 2 3"]]],
    ['ENV A ""', [["A", '""']]],
    ["ENV A= B=", [["A", ""], ["B", ""]]],
    ['LABEL "com.example.vendor"="ACME" version=1.0', [['"com.example.vendor"', '"ACME"'], ["version", "1.0"]]],
    ['LABEL description="a long \\\nvalue"', [["description", '"a long value"']]],
    ["LABEL legacy value with spaces", [["legacy", "value with spaces"]]],
  ])("ENV/LABEL pairs: %s", (text, pairs) => {
    expect(only(text).pairs?.map((p) => [p.key, p.value])).toEqual(pairs);
  });

  it.each([
    ["ARG A", [["A", undefined]]],
    ["ARG A B=2 C=", [["A", undefined], ["B", "2"], ["C", ""]]],
    ['ARG A="x y" B', [["A", '"x y"'], ["B", undefined]]],
  ])("ARG pairs: %s", (text, pairs) => {
    expect(only(text).pairs?.map((p) => [p.key, p.value])).toEqual(pairs);
  });

  it("keeps flags as written, with values unquoted", () => {
    const copy = only('COPY --from=build --chown="app user:staff" --link --exclude=*.md --exclude=*.txt src/ /app/');
    expect(copy.flags.map((f) => [f.name, f.value, f.raw])).toEqual([
      ["from", "build", "--from=build"],
      ["chown", "app user:staff", '--chown="app user:staff"'],
      ["link", undefined, "--link"],
      ["exclude", "*.md", "--exclude=*.md"],
      ["exclude", "*.txt", "--exclude=*.txt"],
    ]);
    expect(copy.args).toEqual(["src/", "/app/"]);
    expect(copy.flags[1]?.span).toEqual({ start: { line: 2, column: 19 }, end: { line: 2, column: 43 } });
  });

  it("parses every RUN flag", () => {
    const run = only(
      "RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok,env=TOKEN --network=none --security=sandbox --device=/dev/fuse make",
    );
    expect(run.flags.map((f) => f.name)).toEqual(["mount", "mount", "network", "security", "device"]);
    expect(run.args).toEqual(["make"]);
  });

  it("stops reading flags at a lone --", () => {
    expect(only("RUN -- --not-a-flag").args).toEqual(["--not-a-flag"]);
  });

  it("parses FROM with platform and stage names", () => {
    const dockerfile = parse("ARG TAG=12\nFROM --platform=$BUILDPLATFORM debian:${TAG} AS Build\nFROM build\nRUN x");
    expect(dockerfile.stages).toEqual([
      { name: "build", base: "debian:${TAG}", platform: "$BUILDPLATFORM", from: 1, end: 2 },
      { name: undefined, base: "build", platform: undefined, from: 2, end: 4 },
    ]);
    expect(dockerfile.warnings.map((w) => w.code)).toContain("StageNameCasing");
  });

  it("parses ONBUILD with its trigger", () => {
    const onbuild = only("ONBUILD COPY --chown=app . /src");
    expect(onbuild.args).toEqual(["COPY --chown=app . /src"]);
    expect(onbuild.trigger).toMatchObject({ keyword: "copy", args: [".", "/src"], flags: [{ name: "chown", value: "app" }] });
  });
});

describe("heredocs", () => {
  it("reads a heredoc body after the line", () => {
    const [run, cmd] = body("RUN <<EOF\necho $A\n  indented\nEOF\nCMD x");
    expect(run?.heredocs).toEqual([
      { name: "EOF", content: "echo $A\n  indented\n", expand: true, chomp: false, fd: 0, span: { start: { line: 3, column: 1 }, end: { line: 5, column: 4 } } },
    ]);
    expect(run?.span.end).toEqual({ line: 5, column: 4 });
    expect(cmd?.args).toEqual(["x"]);
  });

  it.each([
    ['RUN <<"EOF"\n$A\nEOF', { name: "EOF", expand: false }],
    ["RUN <<'EOF'\n$A\nEOF", { name: "EOF", expand: false }],
    ['RUN <<E"O"F\n$A\nEOF', { name: "EOF", expand: false }],
    ["RUN <<-EOF\n\t\tindented\n\tEOF", { name: "EOF", chomp: true, content: "\t\tindented\n" }],
    ["RUN cat 3<<EOF\nx\nEOF", { name: "EOF", fd: 3 }],
    ["RUN python3 <<PY\nprint(1)\nPY", { name: "PY", content: "print(1)\n" }],
  ])("%j", (text, expected) => {
    expect(only(text).heredocs[0]).toMatchObject(expected);
  });

  it("reads several heredocs on one line in order", () => {
    const copy = only("COPY <<one <<two /dest/\n1\none\n2\ntwo");
    expect(copy.heredocs.map((h) => [h.name, h.content])).toEqual([["one", "1\n"], ["two", "2\n"]]);
    expect(copy.args).toEqual(["<<one", "<<two", "/dest/"]);
  });

  it("keeps CRLF line endings inside the body", () => {
    expect(only("RUN <<EOF\r\na\r\nEOF\r\n").heredocs[0]?.content).toBe("a\r\n");
  });

  it("takes heredocs in ADD and ONBUILD RUN, not in JSON form or other instructions", () => {
    expect(only("ADD <<EOF /x\nbody\nEOF").heredocs).toHaveLength(1);
    expect(only("ONBUILD RUN <<EOF\nbody\nEOF").trigger?.heredocs).toHaveLength(1);
    expect(body('RUN ["cat", "<<EOF"]\nCMD x')).toHaveLength(2);
    expect(body("ENV A=<<EOF\nCMD x")).toHaveLength(2);
  });

  it("does not open heredocs for << inside quotes", () => {
    expect(body("RUN echo '<<EOF'\nCMD x").map((i) => i.keyword)).toEqual(["run", "cmd"]);
  });
});

describe("errors", () => {
  it.each<[string, number, number, string, string?]>([
    ["FROM scratch\nRUNN echo hi", 2, 1, "unknown instruction RUNN", "did you mean RUN?"],
    ["FROM scratch\n  COPPY a b", 2, 3, "unknown instruction COPPY", "did you mean COPY?"],
    ["FROM scratch\nCOPY --form=build a b", 2, 6, "unknown flag --form for COPY", "did you mean --from?"],
    ["FROM scratch\nENV --x=1 A=1", 2, 5, "unknown flag --x for ENV", "ENV accepts no flags"],
    ["FROM scratch\nENV =1", 2, 5, "ENV names must not be empty"],
    ["FROM scratch\nARG =1", 2, 5, "ARG names must not be empty"],
    ["FROM scratch\nENV A", 2, 5, "ENV A has no value"],
    ["FROM scratch\nENV A=1 B", 2, 9, 'has no "="'],
    ["FROM scratch\nENV", 2, 1, "ENV requires at least one argument"],
    ["FROM", 1, 1, "FROM requires an image"],
    ["FROM a b", 1, 8, 'unexpected "b" after the image'],
    ["FROM a IS b", 1, 8, "expected AS before the stage name"],
    ["FROM a AS 1b", 1, 11, 'invalid stage name "1b"'],
    ["FROM a AS b c", 1, 13, "found more words"],
    ["FROM scratch\nCOPY a", 2, 1, "COPY requires at least one source and a destination"],
    ["FROM scratch\nCOPY a <<EOF\nx\nEOF", 2, 8, "cannot take a heredoc as its destination"],
    ["FROM scratch\nRUN <<EOF\nno end", 2, 1, "heredoc <<EOF is not terminated"],
    ["FROM scratch\nRUN", 2, 1, "RUN requires a command"],
    ["FROM scratch\nCMD [1, 2]", 2, 5, "element 1 is the number 1"],
    ['FROM scratch\nRUN ["a", null]', 2, 5, "element 2 is null"],
    ["FROM scratch\nSHELL /bin/sh -c", 2, 7, "SHELL requires the JSON (exec) form"],
    ["FROM scratch\nSHELL []", 2, 7, "SHELL requires at least one argument"],
    ["FROM scratch\nONBUILD", 2, 1, "ONBUILD requires an instruction"],
    ["FROM scratch\nONBUILD ONBUILD RUN x", 2, 9, "ONBUILD ONBUILD is not allowed"],
    ["FROM scratch\nONBUILD FROM x", 2, 9, "FROM isn't allowed as an ONBUILD trigger"],
    ["FROM scratch\nONBUILD MAINTAINER x", 2, 9, "MAINTAINER isn't allowed as an ONBUILD trigger"],
    ["FROM scratch\nONBUILD RUNN x", 2, 9, "unknown instruction RUNN"],
    ["FROM scratch\nHEALTHCHECK", 2, 1, "HEALTHCHECK requires NONE or CMD"],
    ["FROM scratch\nHEALTHCHECK NONE x", 2, 18, "HEALTHCHECK NONE takes no arguments"],
    ["FROM scratch\nHEALTHCHECK CMD", 2, 1, "HEALTHCHECK CMD requires a command"],
    ["FROM scratch\nHEALTHCHECK TEST x", 2, 13, 'unknown HEALTHCHECK type "TEST"'],
    ["FROM scratch\nHEALTHCHECK --interval=5 CMD x", 2, 13, 'invalid duration "5" for --interval'],
    ["FROM scratch\nHEALTHCHECK --timeout=10ns CMD x", 2, 13, "cannot be less than 1ms"],
    ["FROM scratch\nHEALTHCHECK --retries=-1 CMD x", 2, 13, "--retries cannot be negative"],
    ["FROM scratch\nHEALTHCHECK --retries=x CMD x", 2, 13, "--retries must be a whole number"],
    ["FROM scratch\nEXPOSE http", 2, 8, 'invalid port "http"'],
    ["FROM scratch\nEXPOSE 80/xtp", 2, 8, 'unknown protocol "xtp"'],
    ["FROM scratch\nEXPOSE 90-80", 2, 8, "the end is before the start"],
    ["FROM scratch\nEXPOSE 70000", 2, 8, "port out of range"],
    ["FROM scratch\nSTOPSIGNAL SIGFOO", 2, 12, 'unknown signal "SIGFOO"'],
    ['FROM scratch\nVOLUME [""]', 2, 8, "VOLUME paths must not be empty"],
    ["FROM scratch\nUSER", 2, 1, "USER requires a user name or id"],
    ["FROM scratch\nWORKDIR", 2, 1, "WORKDIR requires a path"],
    ["FROM scratch\nCOPY --link=yes a b", 2, 6, "--link takes true or false"],
    ["FROM scratch\nCOPY --from a b", 2, 6, "--from needs a value"],
    ["FROM scratch\nCOPY --from=a --from=b a b", 2, 15, "--from is given twice"],
    ["FROM scratch\nCOPY --chmod=999 a b", 2, 6, 'invalid --chmod value "999"'],
    ["FROM scratch\nADD --checksum=md5:abc a b", 2, 5, "invalid --checksum"],
    ["FROM scratch\nRUN --network=bridge x", 2, 5, 'unsupported network mode "bridge"'],
    ["FROM scratch\nRUN --security=privileged x", 2, 5, 'unsupported security mode "privileged"'],
    ["FROM scratch\nRUN --mount=type=cahce,target=/x x", 2, 5, 'unsupported mount type "cahce"', "did you mean type=cache?"],
    ["FROM scratch\nRUN --mount=type=cache x", 2, 5, "a cache mount needs a target"],
    ["FROM scratch\nRUN --mount=type=cache,target=/x,sharing=all x", 2, 5, 'unsupported sharing mode "all"'],
    ["FROM scratch\nRUN --mount=type=bind,target=/x,size=1m x", 2, 5, 'option "size" does not apply to bind mounts'],
    ["FROM scratch\nRUN --mount=type=tmpfs,target=/x,bogus=1 x", 2, 5, 'unknown mount option "bogus"'],
    ["FROM scratch\nRUN --mount=type=secret x", 2, 5, "a secret mount needs an id or a target"],
    ["FROM scratch\nRUN --mount=type=cache,target=/x,mode=rwx x", 2, 5, "mount mode must be octal"],
    ['FROM scratch\nENV A="abc', 2, 5, "double-quote"],
    ["FROM scratch\nWORKDIR ${DIR", 2, 9, "missing '}'"],
    ["FROM scratch\nCOPY --chown=${U a b", 2, 6, "missing '}'"],
    ["FROM scratch\nLABEL a='b", 2, 7, "single-quote"],
    ["RUN echo hi", 1, 1, "RUN before the first FROM"],
    ["ARG A\nENV B=1\nFROM scratch", 2, 1, "ENV before the first FROM"],
    ["ARG A", 1, 1, "the Dockerfile has no FROM"],
    ["", 1, 1, "the Dockerfile has no instructions"],
    ["# only\n# comments\n\n", 3, 1, "the Dockerfile has no instructions"],
  ])("%j", (text, line, column, message, hint) => {
    const error = parseError(text);
    expect(error.message).toContain(message);
    expect([error.span.start.line, error.span.start.column]).toEqual([line, column]);
    if (hint) expect(error.hint).toContain(hint);
  });

  it("formats an error with the file, the line and a caret", () => {
    const error = parseError("FROM scratch\n\tCOPY --form=x a b");
    expect(error.format()).toBe(
      [
        "Dockerfile:2:7: unknown flag --form for COPY",
        " 2 | \tCOPY --form=x a b",
        "   | \t     ^^^^^^^^",
        "hint: did you mean --from?",
      ].join("\n"),
    );
  });

  it("accepts what BuildKit accepts even where it looks odd", () => {
    expect(only("STOPSIGNAL --x=1 SIGTERM").args).toEqual(["SIGTERM"]);
    expect(parse("FROM scratch\nSTOPSIGNAL --x=1 SIGTERM").warnings.map((w) => w.code)).toEqual(["IgnoredFlag"]);
    expect(only("HEALTHCHECK --bogus NONE").args).toEqual(["NONE"]);
    expect(only("RUN --mount=type=cache,target=$DIR,mode=$MODE x").flags).toHaveLength(1);
    expect(only("EXPOSE ${PORT}/tcp").args).toEqual(["${PORT}/tcp"]);
    // Only the build knows whether a required variable is set.
    expect(only("WORKDIR ${DIR:?set DIR}").args).toEqual(["${DIR:?set DIR}"]);
    // RUN goes to the shell unexpanded: its quoting is the shell's business.
    expect(only('RUN echo "unterminated').args).toEqual(['echo "unterminated']);
  });
});
