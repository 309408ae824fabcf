import { lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { extract as createExtract } from "tar-stream";
import { describe, expect, it } from "vitest";
import { exportLocal, exportTar } from "../../src/exporter/index.ts";
import { run, snapshot, tempDir, whiteout } from "./helpers.ts";
import { makeRichLayer, makeStack, treeContents } from "./layers.ts";

async function entries(file: string): Promise<{ name: string; type: string; mtime: number; linkname: string | null }[]> {
  const extract = createExtract();
  const list: { name: string; type: string; mtime: number; linkname: string | null }[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const pax = (entry.header.pax ?? {}) as Record<string, string>;
      list.push({ name: entry.header.name, type: entry.header.type, mtime: Number(pax.mtime ?? entry.header.mtime.getTime() / 1000), linkname: entry.header.linkname });
      entry.resume();
    }
  })();
  extract.end(readFileSync(file));
  await done;
  return list;
}

function untar(file: string): string {
  const dir = tempDir();
  run("tar", ["--numeric-owner", "--same-owner", "-p", "-xf", file, "-C", dir]);
  return dir;
}

describe("exportTar", () => {
  it("writes the merged filesystem: whiteouts, directory whiteouts and opaque dirs applied, no whiteout entries", async () => {
    const work = tempDir();
    const { layers, expected } = makeStack(work);
    const file = join(work, "fs.tar");
    await exportTar(layers, file);
    expect(treeContents(untar(file))).toEqual(expected);
    const names = (await entries(file)).map((entry) => entry.name);
    expect(names.some((name) => name.includes(".wh."))).toBe(false);
    expect(names).toEqual(["bin/", "bin/sh", "d/", "d/x", "etc/", "etc/apt/", "etc/apt/new.list", "etc/b", "f/", "f/inner", "link", "var/"]);
  });

  it("agrees with exportLocal on everything, owners, modes, times, links and devices included", async () => {
    const work = tempDir();
    const { layers } = makeStack(work);
    const rich = join(work, "rich");
    const all = [...layers, { dir: rich, ...makeRichLayer(rich) }];
    const file = join(work, "fs.tar");
    await exportTar(all, file);
    const local = join(work, "local");
    await exportLocal(all, local, { preserveOwnership: true });
    expect(snapshot(untar(file))).toEqual(snapshot(local));
    const list = await entries(file);
    expect(list.find((entry) => entry.name === "hard/two")).toMatchObject({ type: "link", linkname: "hard/one" });
    expect(run("tar", ["-tvf", file])).toMatch(/^c.* 1,3 .*null-device$/m);
  });

  it("is deterministic, to a file or a stream, and sets every mtime to SOURCE_DATE_EPOCH", async () => {
    const work = tempDir();
    const { layers } = makeStack(work);
    const a = join(work, "a.tar");
    const b = join(work, "b.tar");
    await exportTar(layers, a);
    await exportTar(layers, b);
    expect(readFileSync(b)).toEqual(readFileSync(a));
    const chunks: Buffer[] = [];
    await exportTar(layers, new Writable({ write: (chunk: Buffer, _encoding, callback) => (chunks.push(chunk), callback()) }));
    expect(Buffer.concat(chunks)).toEqual(readFileSync(a));

    const epoch = join(work, "epoch.tar");
    await exportTar(layers, epoch, { sourceDateEpoch: 1_800_000_000 });
    expect(new Set((await entries(epoch)).map((entry) => entry.mtime))).toEqual(new Set([1_800_000_000]));
    await expect(exportTar(layers, join(work, "x.tar"), { sourceDateEpoch: -1 })).rejects.toMatchObject({ code: "ERR_BAD_OPTION" });
  });

  it("follows the overlay rules at every depth: a directory across layers, replaced, hidden by a file, opaque root", async () => {
    const work = tempDir();
    const put = (root: string, path: string, content: string) => {
      mkdirSync(join(root, path, ".."), { recursive: true });
      writeFileSync(join(root, path), content);
    };
    const [l0, l1, l2, l3] = ["l0", "l1", "l2", "l3"].map((name) => join(work, name)) as [string, string, string, string];
    put(l0, "a/b/c/deep", "0");
    put(l0, "a/keep", "0");
    put(l0, "x/y", "0");
    mkdirSync(l1);
    put(l2, "a/b/c/other", "2");
    put(l2, "x", "x is a file now");
    mkdirSync(join(l3, "a/b"), { recursive: true });
    whiteout(join(l3, "a/b/c"));
    const file = join(work, "fs.tar");
    await exportTar(
      [l0, l1, l2, l3].map((dir) => ({ dir, opaqueDirs: [] })),
      file,
    );
    expect(treeContents(untar(file))).toEqual({ a: "dir", "a/b": "dir", "a/keep": "0", x: "x is a file now" });

    const root = join(work, "root.tar");
    await exportTar(
      [
        { dir: l0, opaqueDirs: [] },
        { dir: l2, opaqueDirs: ["/"] },
      ],
      root,
    );
    expect(treeContents(untar(root))).toEqual({ a: "dir", "a/b": "dir", "a/b/c": "dir", "a/b/c/other": "2", x: "x is a file now" });
  });

  it("fails clearly on a missing layer and a directory as destination, leaving nothing behind", async () => {
    const work = tempDir();
    await expect(exportTar([{ dir: join(work, "nope"), opaqueDirs: [] }], join(work, "out.tar"))).rejects.toThrow(/layer directory .*nope cannot be read/);
    await expect(exportTar([], work)).rejects.toThrow(/cannot write an archive to .*: it is a directory/);
    expect(run("ls", ["-A", work]).trim()).toBe("");
    await exportTar([], join(work, "empty.tar"));
    expect(readFileSync(join(work, "empty.tar")).length).toBe(1024);
  });

  it("writes through a symlink (as to /dev/stdout) instead of replacing it", async () => {
    const work = tempDir();
    const { layers, expected } = makeStack(work);
    const real = join(work, "real.tar");
    writeFileSync(real, "old content, longer than nothing");
    symlinkSync(real, join(work, "link.tar"));
    await exportTar(layers, join(work, "link.tar"));
    expect(lstatSync(join(work, "link.tar")).isSymbolicLink()).toBe(true);
    expect(treeContents(untar(real))).toEqual(expected);
  });
});
