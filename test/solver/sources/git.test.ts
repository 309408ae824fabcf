import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SourceOp } from "../../../src/llb/index.ts";
import { MissingCommandError } from "../../../src/solver/sources/command.ts";
import { isGitUrl, loadGitSource, parseGitUrl, specOfIdentifier } from "../../../src/solver/sources/git.ts";
import { StateRoot } from "../../../src/solver/store/index.ts";
import { UserError } from "../../../src/user-error.ts";
import { freshDir, git, makeRepo, startGitDaemon, startGitHttpServer, type TestRepo } from "./helpers.ts";

let base: string;
let repo: TestRepo;
let daemon: Awaited<ReturnType<typeof startGitDaemon>>;

beforeAll(async () => {
  base = freshDir("git");
  repo = makeRepo(base);
  daemon = await startGitDaemon(base);
});
afterAll(async () => {
  await daemon?.stop();
});

function op(spec: string, keepGitDir = false): SourceOp {
  return { type: "source", identifier: `git://${spec}`, attrs: { keepGitDir: String(keepGitDir) } };
}

function fileUrl(fragment = ""): string {
  return `file://${repo.bare}${fragment}`;
}

async function store(): Promise<StateRoot> {
  return StateRoot.open(freshDir("root"));
}

describe("git URLs", () => {
  it("splits URL#ref:subdir", () => {
    expect(parseGitUrl("https://example.com/r.git#v1.0:docs/api")).toEqual({ remote: "https://example.com/r.git", ref: "v1.0", subdir: "docs/api" });
    expect(parseGitUrl("git@github.com:o/r.git#:sub/")).toEqual({ remote: "git@github.com:o/r.git", ref: "", subdir: "sub" });
    expect(parseGitUrl("git://host/r")).toEqual({ remote: "git://host/r", ref: "", subdir: "" });
    expect(() => parseGitUrl("https://example.com/r.git#main:../up")).toThrow(UserError);
  });

  it("recognizes git URLs as Docker does", () => {
    expect(isGitUrl("git@github.com:o/r.git")).toBe(true);
    expect(isGitUrl("git://host/r")).toBe(true);
    expect(isGitUrl("https://host/r.git#main")).toBe(true);
    expect(isGitUrl("https://host/r.tar.gz")).toBe(false);
  });

  it("takes the URL back out of the source identifier", () => {
    expect(specOfIdentifier("git://https://host/r.git#x")).toBe("https://host/r.git#x");
    expect(specOfIdentifier("git://git@host:o/r.git")).toBe("git@host:o/r.git");
    expect(specOfIdentifier("git://git://host/r")).toBe("git://host/r");
    expect(specOfIdentifier("git://host/r")).toBe("git://host/r");
  });
});

describe("loadGitSource", () => {
  it("checks out the default branch without .git", async () => {
    const loaded = await loadGitSource(op(fileUrl()), await store());
    const dir = loaded.layers[0]!.dir;
    expect(readdirSync(dir).sort()).toEqual(["README", "sub"]);
    expect(readFileSync(join(dir, "README"), "utf8")).toBe("version 2\n");
  });

  it("checks out a branch with a subdirectory", async () => {
    const loaded = await loadGitSource(op(fileUrl("#feature:sub")), await store());
    const dir = loaded.layers[0]!.dir;
    expect(readdirSync(dir).sort()).toEqual(["deeper", "feature.txt", "inner.txt"]);
    expect(readFileSync(join(dir, "inner.txt"), "utf8")).toBe("inner 2\n");
  });

  it("checks out an annotated tag", async () => {
    const loaded = await loadGitSource(op(fileUrl("#v1")), await store());
    expect(readFileSync(join(loaded.layers[0]!.dir, "README"), "utf8")).toBe("version 1\n");
  });

  it("checks out a commit, full or short", async () => {
    const full = await loadGitSource(op(fileUrl(`#${repo.commits.first}:sub`)), await store());
    expect(readFileSync(join(full.layers[0]!.dir, "inner.txt"), "utf8")).toBe("inner 1\n");
    const short = await loadGitSource(op(fileUrl(`#${repo.commits.first.slice(0, 10)}`)), await store());
    expect(readFileSync(join(short.layers[0]!.dir, "README"), "utf8")).toBe("version 1\n");
  });

  it("keeps .git with keepGitDir, at the right commit", async () => {
    const loaded = await loadGitSource(op(fileUrl("#main"), true), await store());
    const dir = loaded.layers[0]!.dir;
    expect(existsSync(join(dir, ".git"))).toBe(true);
    expect(git(dir, "rev-parse", "HEAD")).toBe(repo.commits.second);
    expect(git(dir, "rev-parse", "--abbrev-ref", "HEAD")).toBe("main");
  });

  it("works over the git protocol (git daemon on loopback)", async () => {
    const loaded = await loadGitSource(op(`${daemon.url("repo.git")}#v1:sub/deeper`), await store());
    expect(readdirSync(loaded.layers[0]!.dir)).toEqual(["x.txt"]);
  });

  it("works over smart HTTP (https://….git#ref:subdir form)", async () => {
    const http = await startGitHttpServer(base);
    try {
      const loaded = await loadGitSource(op(`${http.url("repo.git")}#feature:sub`), await store());
      expect(readdirSync(loaded.layers[0]!.dir).sort()).toEqual(["deeper", "feature.txt", "inner.txt"]);
    } finally {
      await http.close();
    }
  });

  it("reuses the layer while the ref points at the same commit, and follows it when it moves", async () => {
    const root = await store();
    const base2 = freshDir("moving");
    const moving = makeRepo(base2, "moving.git");
    const spec = `file://${moving.bare}#main`;
    const first = await loadGitSource(op(spec), root);
    const again = await loadGitSource(op(spec), root);
    expect(again.cacheKey).toBe(first.cacheKey);
    moving.commit({ README: "version 3\n" }, "third");
    const moved = await loadGitSource(op(spec), root);
    expect(moved.cacheKey).not.toBe(first.cacheKey);
    expect(readFileSync(join(moved.layers[0]!.dir, "README"), "utf8")).toBe("version 3\n");
  });

  it("reports an unknown ref and a missing subdirectory", async () => {
    await expect(loadGitSource(op(fileUrl("#no-such-branch")), await store())).rejects.toThrow(/has no branch, tag or commit "no-such-branch"/);
    await expect(loadGitSource(op(fileUrl("#main:nope")), await store())).rejects.toThrow(/has no directory "nope"/);
    await expect(loadGitSource(op(fileUrl("#main:README")), await store())).rejects.toThrow(/has no directory "README"/);
  });

  it("reports an unreachable repository", async () => {
    await expect(loadGitSource(op(`file://${base}/absent.git`), await store())).rejects.toThrow(/git repository file:\/\/.*absent\.git failed/);
  });

  it("names the Debian package when git is missing", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(base, "no-such-bin");
    try {
      const error = await loadGitSource(op(fileUrl()), await store()).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(MissingCommandError);
      expect((error as MissingCommandError).hint).toContain("apt-get install git");
    } finally {
      process.env.PATH = path;
    }
  });
});
