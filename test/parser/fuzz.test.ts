import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DockerfileSyntaxError, parseDockerfile } from "../../src/parser/index.ts";

/** Parsing either returns a tree or throws a positioned DockerfileSyntaxError; nothing else. */
function parsesOrExplains(text: string): void {
  try {
    const dockerfile = parseDockerfile(text);
    expect(dockerfile.instructions.length).toBeGreaterThan(0);
    for (const instruction of dockerfile.instructions) {
      expect(instruction.span.start.line).toBeGreaterThanOrEqual(1);
      expect(instruction.span.start.column).toBeGreaterThanOrEqual(1);
    }
  } catch (error) {
    if (!(error instanceof DockerfileSyntaxError)) throw error;
    const lineCount = text.split("\n").length;
    expect(error.span.start.line).toBeGreaterThanOrEqual(1);
    expect(error.span.start.line).toBeLessThanOrEqual(lineCount);
    expect(error.span.start.column).toBeGreaterThanOrEqual(1);
    expect(error.message.length).toBeGreaterThan(0);
    expect(() => error.format()).not.toThrow();
  }
}

/** Pieces that exercise every parser path when shuffled together. */
const FRAGMENTS = [
  "FROM ", "from ", "RUN ", "COPY ", "ADD ", "ENV ", "ARG ", "LABEL ", "ONBUILD ", "HEALTHCHECK ", "CMD ", "SHELL ",
  "EXPOSE ", "VOLUME ", "USER ", "WORKDIR ", "STOPSIGNAL ", "MAINTAINER ", "ENTRYPOINT ", "NONE", "AS ", "scratch",
  "--mount=type=cache,target=/x", "--from=", "--chown=", "--link", "--", "--platform=$P", "--interval=", "--network=",
  "\\\n", "`\n", "\n", "\r\n", " ", "\t", "#", "# escape=`\n", "# syntax=x\n", "<<EOF", "<<-EOF", "<<'EOF'", "EOF\n",
  '"', "'", "\\", "$", "${", "}", "[", "]", ",", '["a"]', "[1]", "=", "a=b", "\u00a0", "\ufeff", "\u0000", "é", "🐳",
];
const dockerfileLike = fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 40 }).map((parts) => parts.join(""));

describe("the parser never fails unexplained", () => {
  it("on Dockerfile-like text", () => {
    fc.assert(fc.property(dockerfileLike, parsesOrExplains), { numRuns: 3000 });
  });

  it("on Dockerfile-like text after a valid FROM", () => {
    fc.assert(fc.property(dockerfileLike, (text) => parsesOrExplains(`FROM scratch\n${text}`)), { numRuns: 3000 });
  });

  it("on arbitrary unicode text", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 200 }), parsesOrExplains), { numRuns: 1000 });
  });

  it("on binary junk", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => parsesOrExplains(new TextDecoder().decode(bytes))),
      { numRuns: 1000 },
    );
  });

  // Quadratic behaviour would show as a test timeout here; speed itself is measured in bench/.
  it("on very long lines and very many continuation or heredoc lines", () => {
    const long = "a".repeat(1_000_000);
    parsesOrExplains(`FROM scratch\nRUN echo ${long}`);
    parsesOrExplains(`FROM scratch\nENV ${"k=v ".repeat(100_000)}`);
    parsesOrExplains(`FROM scratch\nCOPY ${"--exclude=x ".repeat(50_000)}a b`);
    parsesOrExplains(`FROM scratch\nRUN ${"\\\n".repeat(50_000)}x`);
    parsesOrExplains(`${"\\".repeat(100_000)}`);
    parsesOrExplains(`FROM scratch\nRUN <<EOF\n${"line\n".repeat(100_000)}EOF`);
  });
});
