import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { compress as zstdCompress } from "zstd-napi";
import { describe, expect, it } from "vitest";
import { extractLayer, MEDIA_TYPES, UnsafeLayerEntryError, writeLayerBlob } from "../../src/exporter/index.ts";
import { rawTar, requireTools, run, sha256, snapshot, tempDir, type RawEntry } from "./helpers.ts";

/** Extracts a hand-made tar; returns the promise and where things went. */
async function extractRaw(entries: RawEntry[]) {
  const work = tempDir();
  const blob = join(work, "layer.tar");
  await rawTar(blob, entries);
  const into = join(work, "root", "layer");
  mkdirSync(into, { recursive: true });
  return { work, into, blob, result: extractLayer(blob, MEDIA_TYPES.ociLayer, into) };
}

async function refusal(entries: RawEntry[], entry: string): Promise<UnsafeLayerEntryError> {
  const { result } = await extractRaw(entries);
  const error = await result.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UnsafeLayerEntryError);
  const unsafe = error as UnsafeLayerEntryError;
  expect(unsafe.code).toBe("ERR_LAYER_UNSAFE_ENTRY");
  expect(unsafe.entry).toBe(entry);
  expect(unsafe.message).toContain(JSON.stringify(entry));
  return unsafe;
}

describe("extractLayer refuses entries that escape the root", () => {
  it("a '..' path", async () => {
    const error = await refusal([{ name: "ok" }, { name: "../x", content: "escaped" }], "../x");
    expect(error.message).toMatch(/'\.\.' component/);
  });

  it("a '..' hidden in the middle of a path", async () => {
    await refusal([{ name: "a/../../x", content: "escaped" }], "a/../../x");
  });

  it("an absolute path", async () => {
    const error = await refusal([{ name: "/abs", content: "escaped" }], "/abs");
    expect(error.message).toMatch(/absolute path/);
    expect(existsSync("/abs")).toBe(false);
  });

  it("a symlink a -> /etc followed by a/passwd", async () => {
    const before = statSync("/etc/passwd");
    // The payload is /etc/passwd itself: even a broken check could not damage this machine.
    const payload = readFileSync("/etc/passwd", "utf8");
    const error = await refusal([{ name: "a", type: "symlink", linkname: "/etc" }, { name: "a/passwd", content: payload }], "a/passwd");
    expect(error.message).toMatch(/parent "a" is a symbolic link \(to "\/etc"\)/);
    const after = statSync("/etc/passwd");
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  });

  it("a symlink to a directory outside, followed by a file and a directory under it", async () => {
    const outside = tempDir();
    await refusal([{ name: "a", type: "symlink", linkname: outside }, { name: "a/planted", content: "x" }], "a/planted");
    await refusal([{ name: "a", type: "symlink", linkname: outside }, { name: "a/sub/", type: "directory" }], "a/sub/");
    // A relative symlink climbing out, used deeper down.
    await refusal([{ name: "d/", type: "directory" }, { name: "d/up", type: "symlink", linkname: "../../.." }, { name: "d/up/x/y", content: "x" }], "d/up/x/y");
    expect(run("ls", ["-A", outside]).trim()).toBe("");
  });

  it("a hard link to ../../x", async () => {
    const { work, result } = await extractRaw([{ name: "l", type: "link", linkname: "../../x" }]);
    writeFileSync(join(work, "x"), "outside");
    const error = (await result.catch((e: unknown) => e)) as UnsafeLayerEntryError;
    expect(error).toBeInstanceOf(UnsafeLayerEntryError);
    expect(error.entry).toBe("l");
    expect(error.message).toMatch(/hard link to "\.\.\/\.\.\/x"/);
  });

  it("a hard link to an absolute path, and one through a symlink", async () => {
    await refusal([{ name: "l", type: "link", linkname: "/etc/passwd" }], "l");
    const error = await refusal([{ name: "a", type: "symlink", linkname: "/etc" }, { name: "l", type: "link", linkname: "a/passwd" }], "l");
    expect(error.message).toMatch(/parent "a" is a symbolic link/);
  });

  it("a whiteout of '..'", async () => {
    await refusal([{ name: "dir/.wh..." }], "dir/.wh...");
  });
});

describe("extractLayer", () => {
  it("writes whiteouts as 0:0 devices and reports opaque dirs", async () => {
    const { into, result } = await extractRaw([
      { name: "etc/", type: "directory" },
      { name: "etc/.wh.gone" },
      { name: "etc/apt/", type: "directory" },
      { name: "etc/apt/.wh..wh..opq" },
      { name: "etc/apt/new.list", content: "deb x" },
      { name: "usr/.wh..wh.plnk" }, // aufs bookkeeping: ignored, creates nothing
    ]);
    expect(await result).toEqual({ opaqueDirs: ["etc/apt"] });
    const gone = lstatSync(join(into, "etc/gone"));
    expect(gone.isCharacterDevice() && gone.rdev === 0).toBe(true);
    expect(existsSync(join(into, "etc/.wh.gone"))).toBe(false);
    expect(existsSync(join(into, "etc/apt/.wh..wh..opq"))).toBe(false);
    expect(Object.keys(snapshot(into))).toEqual(["etc", "etc/apt", "etc/apt/new.list", "etc/gone"]);
  });

  it("makes many whiteouts (sharing one inode, as overlayfs does) and hard links to them", async () => {
    const names = Array.from({ length: 1200 }, (_, i) => `d/f${i}`);
    const { into, result } = await extractRaw([
      { name: "d/", type: "directory" },
      ...names.map((name) => ({ name: name.replace(/f(\d+)$/, ".wh.f$1") })),
      { name: "d/linked", type: "link", linkname: "d/f7" },
    ]);
    await result;
    const tree = snapshot(into);
    expect(names.every((name) => tree[name] === "whiteout")).toBe(true);
    expect(lstatSync(join(into, "d/linked")).ino).toBe(lstatSync(join(into, "d/f7")).ino);
  });

  it("lets a later entry replace an earlier one, and follows the symlink it replaced never", async () => {
    const outside = tempDir();
    const { into, result } = await extractRaw([
      { name: "x", type: "symlink", linkname: join(outside, "target") },
      { name: "x", content: "second" }, // replaces the symlink, does not write through it
      { name: "d/f", content: "in a dir" },
      { name: "d", content: "now a file" }, // replaces the whole directory
      { name: "./", type: "directory" }, // the root: nothing to do
    ]);
    await result;
    expect(readFileSync(join(into, "x"), "utf8")).toBe("second");
    expect(readFileSync(join(into, "d"), "utf8")).toBe("now a file");
    expect(existsSync(join(outside, "target"))).toBe(false);
  });

  it("refuses a hard link to a missing target and a directory in a file's place", async () => {
    await expect((await extractRaw([{ name: "l", type: "link", linkname: "missing" }])).result).rejects.toThrow(
      /tar entry "l": hard link target "missing" does not exist/,
    );
    await expect((await extractRaw([{ name: "f", content: "x" }, { name: "f/g", content: "y" }])).result).rejects.toThrow(
      /tar entry "f\/g": its parent "f" is not a directory/,
    );
  });

  it("verifies the digest and diff id while reading", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(dir);
    writeFileSync(join(dir, "f"), "content");
    const blob = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "gzip" });
    await extractLayer(blob.path, blob.mediaType, join(work, "ok"), { digest: blob.digest, diffId: blob.diffId });
    const wrong = "sha256:" + "0".repeat(64);
    await expect(extractLayer(blob.path, blob.mediaType, join(work, "bad1"), { digest: wrong })).rejects.toMatchObject({
      code: "ERR_DIGEST_MISMATCH",
      message: expect.stringMatching(/digest mismatch \(expected sha256:0+, got sha256:/) as unknown,
    });
    await expect(extractLayer(blob.path, blob.mediaType, join(work, "bad2"), { diffId: wrong })).rejects.toThrow(/diff id mismatch/);
  });

  it("reads gzip and zstd whatever the media type says, and refuses unknown media types and a non-empty target", async () => {
    const work = tempDir();
    const tar = join(work, "plain.tar");
    await rawTar(tar, [{ name: "hello", content: "hi" }]);
    const gz = join(work, "layer.tar.gz");
    writeFileSync(gz, gzipSync(readFileSync(tar)));
    await extractLayer(gz, MEDIA_TYPES.ociLayer, join(work, "a"));
    expect(readFileSync(join(work, "a/hello"), "utf8")).toBe("hi");
    await extractLayer(gz, MEDIA_TYPES.dockerLayerGzip, join(work, "b"));

    // A plain tar labelled zstd, and a zstd one (made by the zstd CLI) labelled plain.
    await extractLayer(tar, MEDIA_TYPES.ociLayerZstd, join(work, "c"));
    expect(readFileSync(join(work, "c/hello"), "utf8")).toBe("hi");
    requireTools(["zstd"]);
    const zst = join(work, "layer.tar.zst");
    run("zstd", ["-q", tar, "-o", zst]);
    const diffId = sha256(readFileSync(tar));
    await extractLayer(zst, MEDIA_TYPES.ociLayer, join(work, "d"), { digest: sha256(readFileSync(zst)), diffId });
    expect(readFileSync(join(work, "d/hello"), "utf8")).toBe("hi");
    await expect(extractLayer(tar, "application/json", join(work, "e"))).rejects.toThrow(/is not a layer media type/);
    await expect(extractLayer(tar, MEDIA_TYPES.ociLayer, join(work, "a"))).rejects.toThrow(/the directory is not empty/);
  });

  it("fails clearly on a truncated or corrupt layer", async () => {
    const work = tempDir();
    const tar = join(work, "plain.tar");
    await rawTar(tar, [{ name: "hello", content: "x".repeat(5000) }]);
    const truncated = join(work, "truncated.tar");
    writeFileSync(truncated, readFileSync(tar).subarray(0, 1500));
    await expect(extractLayer(truncated, MEDIA_TYPES.ociLayer, join(work, "a"))).rejects.toMatchObject({ code: "ERR_LAYER_BAD_ENTRY" });
    const badGzip = join(work, "bad.tar.gz");
    writeFileSync(badGzip, Buffer.concat([gzipSync(readFileSync(tar)).subarray(0, 60), Buffer.alloc(100, 1)]));
    await expect(extractLayer(badGzip, MEDIA_TYPES.ociLayerGzip, join(work, "b"))).rejects.toThrow(/cannot be read as a tar/);
    // zstd: cut short, and with garbage after a valid frame.
    const zst = zstdCompress(readFileSync(tar));
    writeFileSync(join(work, "cut.zst"), zst.subarray(0, zst.length - 8));
    await expect(extractLayer(join(work, "cut.zst"), MEDIA_TYPES.ociLayerZstd, join(work, "c"))).rejects.toMatchObject({ code: "ERR_LAYER_BAD_ENTRY" });
    writeFileSync(join(work, "junk.zst"), Buffer.concat([zst, Buffer.from("not zstd at all")]));
    await expect(extractLayer(join(work, "junk.zst"), MEDIA_TYPES.ociLayerZstd, join(work, "d"))).rejects.toThrow(/cannot be read as a tar/);
  });
});
