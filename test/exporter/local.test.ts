import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { exportLocal, writeLayerBlob, writeOciLayout } from "../../src/exporter/index.ts";
import { contentSnapshot, requireTools, run, snapshot, tempDir, whiteout } from "./helpers.ts";
import { makeRichLayer, makeStack, treeContents } from "./layers.ts";

beforeAll(() => requireTools(["umoci"]), 600_000);

describe("exportLocal", () => {
  it("copies the merged filesystem: whiteouts, directory whiteouts and opaque dirs applied", async () => {
    const work = tempDir();
    const { layers, expected } = makeStack(work);
    const dest = join(work, "out");
    await exportLocal(layers, dest);
    expect(treeContents(dest)).toEqual(expected);
  });

  it("agrees with umoci unpacking the same layers as an image", async () => {
    const work = tempDir();
    const { layers } = makeStack(work);
    const rich = join(work, "rich");
    const richLayer = { dir: rich, ...makeRichLayer(rich) };
    const all = [...layers, richLayer];
    const dest = join(work, "out");
    await exportLocal(all, dest, { preserveOwnership: true });

    const blobs = [];
    for (const layer of all) blobs.push(await writeLayerBlob(layer, join(work, "blobs"), { compression: "gzip" }));
    const layout = join(work, "layout");
    await writeOciLayout(layout, { layers: blobs, config: { architecture: "amd64", os: "linux" }, tags: ["t"] });
    const bundle = join(work, "bundle");
    run("umoci", ["unpack", "--image", `${layout}:t`, bundle]);
    expect(contentSnapshot(dest)).toEqual(contentSnapshot(join(bundle, "rootfs")));
    // Modes, owners and mtimes too (umoci keeps them all when run as root).
    expect(snapshot(dest)).toEqual(snapshot(join(bundle, "rootfs")));
  });

  it("keeps modes and mtimes; owners only when asked", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    const layer = { dir, ...makeRichLayer(dir) };
    const expected = snapshot(dir);
    delete expected["etc/removed"];
    delete expected["var/old-dir"];

    const owned = join(work, "owned");
    await exportLocal([layer], owned, { preserveOwnership: true });
    expect(snapshot(owned)).toEqual(expected);

    const plain = join(work, "plain");
    await exportLocal([layer], plain);
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const mine = Object.fromEntries(Object.entries(expected).map(([path, line]) => [path, line.replace(/owner=\d+:\d+/, `owner=${uid}:${gid}`)]));
    expect(snapshot(plain)).toEqual(mine);
  });

  it("replaces what dest holds at the image's paths without following symlinks, and keeps the rest", async () => {
    const work = tempDir();
    const outside = tempDir();
    const layer = join(work, "layer");
    mkdirSync(join(layer, "etc"), { recursive: true });
    writeFileSync(join(layer, "etc/passwd"), "image\n");
    writeFileSync(join(layer, "file"), "image file\n");
    whiteout(join(layer, "gone"));

    const dest = join(work, "out");
    mkdirSync(dest);
    symlinkSync(outside, join(dest, "etc")); // would send etc/passwd outside if followed
    symlinkSync(join(outside, "file"), join(dest, "file"));
    writeFileSync(join(dest, "gone"), "not from the image: a whiteout does not delete it\n");
    writeFileSync(join(dest, "unrelated"), "kept\n");

    await exportLocal([{ dir: layer, opaqueDirs: [] }], dest);
    expect(lstatSync(join(dest, "etc")).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, "etc/passwd"), "utf8")).toBe("image\n");
    expect(lstatSync(join(dest, "file")).isFile()).toBe(true);
    expect(run("ls", ["-A", outside]).trim()).toBe("");
    expect(existsSync(join(dest, "gone"))).toBe(true);
    expect(readFileSync(join(dest, "unrelated"), "utf8")).toBe("kept\n");
  });

  it("stops at a layer whose root is opaque", async () => {
    const work = tempDir();
    const lower = join(work, "lower");
    const upper = join(work, "upper");
    mkdirSync(lower);
    mkdirSync(upper);
    writeFileSync(join(lower, "old"), "old\n");
    writeFileSync(join(upper, "new"), "new\n");
    const dest = join(work, "out");
    await exportLocal(
      [
        { dir: lower, opaqueDirs: [] },
        { dir: upper, opaqueDirs: ["/"] },
      ],
      dest,
    );
    expect(treeContents(dest)).toEqual({ new: "new\n" });
  });
});
