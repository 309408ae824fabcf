import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ChecksumCache, fileIdentity, isCacheable } from "../../src/context/checksum-cache.ts";
import { cleanSource, containsWildcards, goClean, maxMatchDepth, splitWildcards } from "../../src/context/paths.ts";
import { matchPath } from "../../src/parser/glob.ts";

describe("cleanSource", () => {
  it.each([
    ["a/b", ["a", "b"], false],
    ["/a//b/", ["a", "b"], false],
    ["./a/./b/..", ["a"], false],
    ["", [], false],
    ["/", [], false],
    ["..", [], true],
    ["a/../../b", ["b"], true],
    ["*/../x", ["x"], false],
  ] as const)("%j", (source, components, escapes) => {
    expect(cleanSource(source)).toEqual({ components, escapes });
  });
});

describe("wildcard helpers (fsutil)", () => {
  it("containsWildcards skips escaped characters", () => {
    expect(containsWildcards("a*")).toBe(true);
    expect(containsWildcards("a?")).toBe(true);
    expect(containsWildcards("[ab]")).toBe(true);
    expect(containsWildcards("a\\*")).toBe(false);
    expect(containsWildcards("a\\\\*")).toBe(true);
    expect(containsWildcards("plain")).toBe(false);
  });

  it("splitWildcards splits at the first element with a wildcard", () => {
    expect(splitWildcards(["a", "b*", "c", "d?"])).toEqual({ base: ["a"], pattern: "b*/c/d?" });
    expect(splitWildcards(["a", "b"])).toEqual({ base: ["a", "b"], pattern: undefined });
    expect(splitWildcards(["*"])).toEqual({ base: [], pattern: "*" });
  });

  it("maxMatchDepth bounds how deep a match can be, even through character classes", () => {
    expect(maxMatchDepth("*.txt")).toBe(1);
    expect(maxMatchDepth("*/x")).toBe(2);
    expect(maxMatchDepth("a[^b]c")).toBe(2);
    expect(matchPath("a[^b]c", "a/c")).toBe(true); // why classes count
  });

  it("goClean matches Go's path.Clean", () => {
    expect(goClean("!a/../b")).toBe("b");
    expect(goClean("./x/")).toBe("x");
    expect(goClean("../x")).toBe("../x");
    expect(goClean("/../x")).toBe("/x");
    expect(goClean("")).toBe(".");
  });
});

describe("isCacheable (racily clean files)", () => {
  const ms = (value: number): bigint => BigInt(value) * 1_000_000n;
  const now = 1_700_000_000_123;

  it("does not trust a ctime within the timestamp granularity of the read", () => {
    expect(isCacheable(ms(now) + 456_789n, now)).toBe(false); // changed during the read
    expect(isCacheable(ms(now - 10) + 1n, now)).toBe(false);
    expect(isCacheable(ms(now - 60) + 1n, now)).toBe(true);
  });

  it("uses a wider window for filesystems with whole-second timestamps", () => {
    const wholeSecond = ms(1_700_000_000_000);
    expect(isCacheable(wholeSecond, 1_700_000_001_000)).toBe(false);
    expect(isCacheable(wholeSecond, 1_700_000_003_000)).toBe(true);
  });

  it("never trusts a ctime in the future", () => {
    expect(isCacheable(ms(now + 5_000), now)).toBe(false);
  });
});

describe("ChecksumCache", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "tsbuild-cache-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function identityOf(file: string, content: string): Promise<ReturnType<typeof fileIdentity>> {
    await writeFile(file, content);
    return fileIdentity(await stat(file, { bigint: true }));
  }

  it("merges concurrent writers, leaves no temporary files, and skips writing when nothing changed", async () => {
    const file = path.join(dir, "nested", "checksums.json");
    const a = await identityOf(path.join(dir, "a"), "a");
    const b = await identityOf(path.join(dir, "b"), "b");
    const first = new ChecksumCache(file);
    const second = new ChecksumCache(file);
    expect(first.get("/a", a)).toBeUndefined();
    expect(second.get("/b", b)).toBeUndefined();
    first.set("/a", a, "1".repeat(64));
    second.set("/b", b, "2".repeat(64));
    await first.save();
    await second.save();
    expect(await readdir(path.dirname(file))).toEqual(["checksums.json"]);

    const third = new ChecksumCache(file);
    expect(third.get("/a", a)).toBe("1".repeat(64));
    expect(third.get("/b", b)).toBe("2".repeat(64));
    expect(third.get("/a", b)).toBeUndefined(); // another identity: stale
    const before = await readFile(file, "utf8");
    await third.save();
    expect(await readFile(file, "utf8")).toBe(before);
  });

  it("without a file it is memory only", async () => {
    const cache = new ChecksumCache(undefined);
    const a = await identityOf(path.join(dir, "a"), "a");
    cache.set("/a", a, "3".repeat(64));
    expect(cache.get("/a", a)).toBe("3".repeat(64));
    await cache.save();
    expect(await readdir(dir)).toEqual(["a"]);
  });
});
