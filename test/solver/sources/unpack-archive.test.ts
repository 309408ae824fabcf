import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { MissingCommandError } from "../../../src/solver/sources/command.ts";
import { UnsafeArchiveEntryError, detectArchive, detectCompression, unpackArchive } from "../../../src/solver/ops/unpack-archive.ts";
import { compress, freshDir, makeTar, type Compression, type TarEntry } from "./helpers.ts";

const isRoot = process.getuid?.() === 0;

const SAMPLE: TarEntry[] = [
  { name: "app/", type: "directory", mode: 0o750, uid: 1001, gid: 1002, mtime: new Date("2021-05-06T07:08:09Z") },
  { name: "app/run.sh", content: "#!/bin/sh\necho hi\n", mode: 0o4755, uid: 1001, gid: 1002 },
  { name: "app/data.txt", content: "data\n", mode: 0o640, uid: 7, gid: 8, mtime: new Date("2019-09-09T09:09:09Z") },
  { name: "app/link", type: "symlink", linkname: "data.txt", uid: 1001, gid: 1002 },
  { name: "app/hard", type: "link", linkname: "app/data.txt" },
  { name: "app/.wh.ghost", content: "a plain file\n" },
  { name: "top.txt", content: "top\n" },
];

async function archiveFile(dir: string, name: string, entries: TarEntry[], compression: Compression = "uncompressed"): Promise<string> {
  const path = join(dir, name);
  writeFileSync(path, compress(await makeTar(entries), compression));
  return path;
}

describe("detectCompression", () => {
  it("reads magic bytes", () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 0x08, 0]))).toBe("gzip");
    expect(detectCompression(Buffer.from("BZh91AY"))).toBe("bzip2");
    expect(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toBe("xz");
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe("zstd");
    expect(detectCompression(Buffer.from("hello"))).toBe("uncompressed");
  });
});

describe("unpackArchive", () => {
  for (const compression of ["uncompressed", "gzip", "bzip2", "xz", "zstd"] as const) {
    it(`unpacks a ${compression} tar, keeping owners, modes and times`, async () => {
      const dir = freshDir(`unpack-${compression}`);
      // The name says nothing: detection is by content.
      const archive = await archiveFile(dir, "archive.bin", SAMPLE, compression);
      expect(await detectArchive(archive)).toBe(compression);
      const dest = join(dir, "dest");
      expect(await unpackArchive(archive, dest)).toBe(true);

      expect(readFileSync(join(dest, "app", "run.sh"), "utf8")).toBe("#!/bin/sh\necho hi\n");
      expect(readFileSync(join(dest, "top.txt"), "utf8")).toBe("top\n");
      expect(readlinkSync(join(dest, "app", "link"))).toBe("data.txt");
      expect(statSync(join(dest, "app", "hard")).ino).toBe(statSync(join(dest, "app", "data.txt")).ino);
      expect(readFileSync(join(dest, "app", ".wh.ghost"), "utf8")).toBe("a plain file\n");
      const run = lstatSync(join(dest, "app", "run.sh"));
      expect(run.mode & 0o7777).toBe(0o4755);
      const data = lstatSync(join(dest, "app", "data.txt"));
      expect(data.mode & 0o7777).toBe(0o640);
      expect(data.mtime.toISOString()).toBe("2019-09-09T09:09:09.000Z");
      const appDir = lstatSync(join(dest, "app"));
      expect(appDir.mode & 0o7777).toBe(0o750);
      expect(appDir.mtime.toISOString()).toBe("2021-05-06T07:08:09.000Z");
      if (isRoot) {
        expect([run.uid, run.gid]).toEqual([1001, 1002]);
        expect([data.uid, data.gid]).toEqual([7, 8]);
        expect([appDir.uid, appDir.gid]).toEqual([1001, 1002]);
        const link = lstatSync(join(dest, "app", "link"));
        expect([link.uid, link.gid]).toEqual([1001, 1002]);
      }
    });
  }

  it("unpacks a tar made by the tar command (GNU format, ./ prefixes, long names)", async () => {
    const dir = freshDir("gnu-tar");
    const src = join(dir, "src");
    const long = `${"d".repeat(120)}/${"f".repeat(120)}.txt`;
    mkdirSync(join(src, "d".repeat(120)), { recursive: true });
    writeFileSync(join(src, long), "long\n");
    const archive = join(dir, "ctx.tar.xz");
    expect(spawnSync("tar", ["-cJf", archive, "-C", src, "."]).status).toBe(0);
    const dest = join(dir, "dest");
    expect(await unpackArchive(archive, dest)).toBe(true);
    expect(readFileSync(join(dest, long), "utf8")).toBe("long\n");
  });

  it("creates fifos, and device nodes as root", async () => {
    const dir = freshDir("special");
    const entries: TarEntry[] = [{ name: "pipe", type: "fifo", mode: 0o640 }];
    if (isRoot) entries.push({ name: "null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 });
    const dest = join(dir, "dest");
    expect(await unpackArchive(await archiveFile(dir, "special.tar", entries), dest)).toBe(true);
    expect(lstatSync(join(dest, "pipe")).isFIFO()).toBe(true);
    expect(lstatSync(join(dest, "pipe")).mode & 0o777).toBe(0o640);
    if (isRoot) {
      const device = lstatSync(join(dest, "null"));
      expect(device.isCharacterDevice()).toBe(true);
      expect(device.rdev).toBe(statSync("/dev/null").rdev);
    }
  });

  it("merges into an existing directory", async () => {
    const dir = freshDir("merge");
    const dest = join(dir, "dest");
    mkdirSync(join(dest, "app"), { recursive: true });
    writeFileSync(join(dest, "keep.txt"), "kept\n");
    writeFileSync(join(dest, "top.txt"), "old\n");
    expect(await unpackArchive(await archiveFile(dir, "a.tar.gz", SAMPLE, "gzip"), dest)).toBe(true);
    expect(readFileSync(join(dest, "keep.txt"), "utf8")).toBe("kept\n");
    expect(readFileSync(join(dest, "top.txt"), "utf8")).toBe("top\n");
  });

  it("leaves files that are not tar archives alone", async () => {
    const dir = freshDir("plain");
    const text = join(dir, "notes.tar");
    writeFileSync(text, "just text, despite the name\n".repeat(40));
    const gzipped = join(dir, "notes.txt.gz");
    writeFileSync(gzipped, gzipSync("compressed text, not a tar\n".repeat(40)));
    const empty = join(dir, "empty.tar");
    writeFileSync(empty, "");
    const zeros = join(dir, "zeros.tar");
    writeFileSync(zeros, Buffer.alloc(1024));
    for (const path of [text, gzipped, empty, zeros]) {
      expect(await detectArchive(path)).toBeUndefined();
      expect(await unpackArchive(path, join(dir, "dest"))).toBe(false);
    }
    expect(existsSync(join(dir, "dest"))).toBe(false);
  });

  it("names the Debian package when a decompressor is missing", async () => {
    const dir = freshDir("missing");
    const archive = await archiveFile(dir, "a.tar.xz", SAMPLE, "xz");
    const path = process.env.PATH;
    process.env.PATH = join(dir, "no-such-bin");
    try {
      const error = await detectArchive(archive).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(MissingCommandError);
      expect((error as MissingCommandError).message).toContain('"xz"');
      expect((error as MissingCommandError).hint).toContain("apt-get install xz-utils");
    } finally {
      process.env.PATH = path;
    }
  });

  it("reports a corrupt archive", async () => {
    const dir = freshDir("corrupt");
    const whole = compress(await makeTar([{ name: "big.bin", content: Buffer.alloc(200_000, 7) }]), "gzip");
    const truncated = join(dir, "t.tar.gz");
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    await expect(unpackArchive(truncated, join(dir, "dest"))).rejects.toThrow(/cannot unpack archive t\.tar\.gz/);
  });

  describe("refuses entries that would write outside the destination", () => {
    const cases: { title: string; entries: TarEntry[]; entry: string }[] = [
      { title: "a '..' path", entries: [{ name: "../escaped.txt", content: "x" }], entry: "../escaped.txt" },
      { title: "a '..' inside the path", entries: [{ name: "a/../../escaped.txt", content: "x" }], entry: "a/../../escaped.txt" },
      { title: "an absolute path", entries: [{ name: "/tmp/escaped.txt", content: "x" }], entry: "/tmp/escaped.txt" },
      {
        title: "a path through a symlink made by an earlier entry",
        entries: [
          { name: "out", type: "symlink", linkname: "/" },
          { name: "out/escaped.txt", content: "x" },
        ],
        entry: "out/escaped.txt",
      },
      {
        title: "a directory entry through a symlink",
        entries: [
          { name: "dir", type: "directory" },
          { name: "dir/up", type: "symlink", linkname: ".." },
          { name: "dir/up/x/", type: "directory" },
        ],
        entry: "dir/up/x/",
      },
      {
        title: "a relative symlink that climbs out",
        entries: [{ name: "a/up", type: "symlink", linkname: "../../outside" }],
        entry: "a/up",
      },
      { title: "a hard link to outside", entries: [{ name: "hard", type: "link", linkname: "../outside/secret" }], entry: "hard" },
      { title: "a hard link to an absolute path", entries: [{ name: "hard", type: "link", linkname: "/etc/passwd" }], entry: "hard" },
      {
        title: "a hard link through a symlink",
        entries: [
          { name: "etc", type: "symlink", linkname: "/etc" },
          { name: "pw", type: "link", linkname: "etc/passwd" },
        ],
        entry: "pw",
      },
    ];
    for (const testCase of cases) {
      it(testCase.title, async () => {
        const dir = freshDir("escape");
        const outside = join(dir, "outside");
        mkdirSync(outside);
        writeFileSync(join(outside, "secret"), "secret\n");
        const dest = join(dir, "box", "dest");
        const archive = await archiveFile(dir, "evil.tar", testCase.entries);
        const error = await unpackArchive(archive, dest, { name: "evil.tar" }).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(UnsafeArchiveEntryError);
        expect((error as UnsafeArchiveEntryError).entry).toBe(testCase.entry);
        expect((error as Error).message).toContain(JSON.stringify(testCase.entry));
        expect((error as Error).message).toContain("evil.tar");
        expect(readdirSync(dir).sort()).toEqual(["box", "evil.tar", "outside"]);
        expect(readdirSync(join(dir, "box"))).toEqual(["dest"]);
        expect(readdirSync(outside)).toEqual(["secret"]);
        expect(existsSync("/tmp/escaped.txt")).toBe(false);
      });
    }

    it("through a symlink that was already in the destination", async () => {
      const dir = freshDir("preexisting");
      const dest = join(dir, "dest");
      mkdirSync(dest);
      symlinkSync(join(dir, "outside"), join(dest, "lib"));
      mkdirSync(join(dir, "outside"));
      const archive = await archiveFile(dir, "a.tar", [{ name: "lib/evil.so", content: "x" }]);
      await expect(unpackArchive(archive, dest)).rejects.toBeInstanceOf(UnsafeArchiveEntryError);
      expect(readdirSync(join(dir, "outside"))).toEqual([]);
    });

    it("but replaces a symlink by a later entry of the same name without following it", async () => {
      const dir = freshDir("replace");
      const outside = join(dir, "outside.txt");
      writeFileSync(outside, "untouched\n");
      const archive = await archiveFile(dir, "a.tar", [
        { name: "x", type: "symlink", linkname: outside },
        { name: "x", content: "replaced\n" },
      ]);
      const dest = join(dir, "dest");
      expect(await unpackArchive(archive, dest)).toBe(true);
      expect(lstatSync(join(dest, "x")).isFile()).toBe(true);
      expect(readFileSync(join(dest, "x"), "utf8")).toBe("replaced\n");
      expect(readFileSync(outside, "utf8")).toBe("untouched\n");
    });
  });
});
