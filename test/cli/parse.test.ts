import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "bin", "tsbuild.js");
const example = join(root, "fixtures", "examples", "hello", "Dockerfile");

function tsbuild(args: string[], input?: string) {
  const result = spawnSync(process.execPath, [bin, ...args], { input, encoding: "utf8", cwd: root });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function dockerfile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "tsbuild-parse-"));
  const path = join(dir, "Dockerfile");
  writeFileSync(path, text);
  return path;
}

beforeAll(() => {
  if (!existsSync(join(root, "dist", "tsbuild.js"))) {
    throw new Error("the CLI is not built: run `npm run build` (scripts/setup.sh does) before the CLI tests");
  }
});

describe("tsbuild parse", () => {
  it("prints an outline of the example", () => {
    const { code, stdout, stderr } = tsbuild(["parse", "-f", example]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toContain("16 instructions, 2 stages");
    expect(stdout).toContain('stage 0 "build" from ${BASE}');
    expect(stdout).toMatch(/14:1 +COPY <<EOF \/app\/version\.txt/);
  });

  it("prints the tree as JSON", () => {
    const { code, stdout } = tsbuild(["parse", "-f", example, "--format", "json"]);
    expect(code).toBe(0);
    const tree = JSON.parse(stdout);
    expect(tree.directives.map((d: { name: string }) => d.name)).toEqual(["syntax", "check"]);
    expect(tree.stages.map((s: { name?: string }) => s.name ?? null)).toEqual(["build", null]);
    const copy = tree.instructions.find((i: { heredocs: unknown[] }) => i.heredocs.length > 0);
    expect(copy.heredocs[0]).toMatchObject({ name: "EOF", content: "version ${VERSION}\n", expand: true });
  });

  it("reads the Dockerfile from standard input", () => {
    const { code, stdout } = tsbuild(["parse", "-f", "-", "--format", "json"], "FROM scratch\nCMD [\"x\"]\n");
    expect(code).toBe(0);
    expect(JSON.parse(stdout).file).toBe("<stdin>");
  });

  it("explains a mistake with file:line:col, a caret and a hint, exit 1, no stack trace", () => {
    const path = dockerfile("FROM scratch\nRUNN echo hi\n");
    const { code, stdout, stderr } = tsbuild(["parse", "-f", path]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe(`error: ${path}:2:1: unknown instruction RUNN\n 2 | RUNN echo hi\n   | ^^^^\nhint: did you mean RUN?\n`);
  });

  it("reports an empty Dockerfile", () => {
    const { code, stderr } = tsbuild(["parse", "-f", dockerfile("# just a comment\n")]);
    expect(code).toBe(1);
    expect(stderr).toContain("the Dockerfile has no instructions");
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it("prints warnings on standard error without failing", () => {
    const { code, stderr } = tsbuild(["parse", "-f", dockerfile("FROM scratch\nMAINTAINER me\n")]);
    expect(code).toBe(0);
    expect(stderr).toMatch(/^warning: .*:2:1: MAINTAINER is deprecated/);
  });

  it("reports a missing file and a directory", () => {
    const missing = tsbuild(["parse", "-f", "/nonexistent/Dockerfile"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read Dockerfile "/nonexistent/Dockerfile": no such file');
    const directory = tsbuild(["parse", "-f", root]);
    expect(directory.code).toBe(1);
    expect(directory.stderr).toContain("it is a directory");
  });

  it("rejects unknown options and commands with exit 2", () => {
    const option = tsbuild(["parse", "--bogus", "-f", example]);
    expect(option.code).toBe(2);
    expect(option.stdout).toBe("");
    expect(option.stderr).toContain("Unknown argument: bogus");
    expect(tsbuild(["frobnicate"]).code).toBe(2);
    expect(tsbuild([]).code).toBe(2);
  });

  it("documents itself", () => {
    const help = tsbuild(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("tsbuild parse");
    expect(tsbuild(["parse", "--help"]).stdout).toContain("--format");
    expect(tsbuild(["--version"]).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
