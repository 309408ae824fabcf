import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { CompressStream, decompress as zstdDecompress } from "zstd-napi";
import { extract as createExtract } from "tar-stream";
import { describe, expect, it } from "vitest";
import { extractLayer, ExporterError, MEDIA_TYPES, writeLayerBlob } from "../../src/exporter/index.ts";
import { requireTools, run, setAllMtimes, sha256, snapshot, tempDir, whiteout } from "./helpers.ts";
import { LONG_FILE, makeRichLayer } from "./layers.ts";

/** Entry names and types of a tar, in order. */
async function listTar(data: Buffer): Promise<{ name: string; type: string; mode: number; mtime: number; uid: number; linkname: string | null }[]> {
  const extract = createExtract();
  const entries: { name: string; type: string; mode: number; mtime: number; uid: number; linkname: string | null }[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      // PAX records win over the ustar fields (large ids, times past 2038).
      const pax = (h.pax ?? {}) as Record<string, string>;
      const mtime = pax.mtime !== undefined ? Number(pax.mtime) : h.mtime.getTime() / 1000;
      const uid = pax.uid !== undefined ? Number(pax.uid) : h.uid;
      entries.push({ name: h.name, type: h.type, mode: h.mode, mtime, uid, linkname: h.linkname });
      entry.resume();
    }
  })();
  extract.end(data);
  await done;
  return entries;
}

describe("writeLayerBlob", () => {
  it("round-trips files, dirs, symlinks, hard links, devices, whiteouts and an opaque dir through extractLayer", async () => {
    const work = tempDir();
    const source = join(work, "layer");
    const { opaqueDirs } = makeRichLayer(source);

    const mediaTypes = { gzip: MEDIA_TYPES.ociLayerGzip, zstd: MEDIA_TYPES.ociLayerZstd, uncompressed: MEDIA_TYPES.ociLayer };
    const diffIds = new Set<string>();
    for (const compression of ["gzip", "zstd", "uncompressed"] as const) {
      const blob = await writeLayerBlob({ dir: source, opaqueDirs }, join(work, "blobs"), { compression });
      expect(blob.mediaType).toBe(mediaTypes[compression]);
      const stored = readFileSync(blob.path);
      expect(blob.path).toBe(join(work, "blobs", blob.digest.slice(7)));
      expect(blob.size).toBe(stored.length);
      expect(blob.digest).toBe(sha256(stored));
      const tar = compression === "gzip" ? gunzipSync(stored) : compression === "zstd" ? zstdDecompress(stored) : stored;
      diffIds.add(blob.diffId);
      expect(blob.diffId).toBe(sha256(tar));
      if (compression === "uncompressed") expect(blob.digest).toBe(blob.diffId);

      const into = join(work, `extracted-${compression}`);
      const result = await extractLayer(blob.path, blob.mediaType, into, { digest: blob.digest, diffId: blob.diffId });
      expect(result.opaqueDirs).toEqual(["etc/apt"]);
      expect(snapshot(into)).toEqual(snapshot(source));
    }
    // The same tar whatever the compression.
    expect(diffIds.size).toBe(1);
  });

  it("writes OCI whiteouts, opaque markers, sorted entries and PAX headers that GNU tar reads", async () => {
    const work = tempDir();
    const source = join(work, "layer");
    const { opaqueDirs } = makeRichLayer(source);
    const blob = await writeLayerBlob({ dir: source, opaqueDirs }, join(work, "blobs"), { compression: "gzip" });
    const entries = await listTar(gunzipSync(readFileSync(blob.path)));
    const names = entries.map((entry) => entry.name);

    // Whiteouts and the opaque marker, mode 0 and time 0 like containerd's; no device node for them.
    expect(names).toContain("etc/.wh.removed");
    expect(names).toContain("var/.wh.old-dir");
    expect(names).not.toContain("etc/removed");
    expect(names.indexOf("etc/apt/.wh..wh..opq")).toBe(names.indexOf("etc/apt/") + 1);
    const marker = entries.find((entry) => entry.name === "etc/.wh.removed");
    expect(marker).toMatchObject({ type: "file", mode: 0, mtime: 0, uid: 0 });
    // Directories end with "/", hard links point at the first name, odd modes survive.
    expect(entries.find((entry) => entry.name === "hard/two")).toMatchObject({ type: "link", linkname: "hard/one" });
    expect(entries.find((entry) => entry.name === "usr/lib/unreadable")?.mode).toBe(0);
    expect(entries.find((entry) => entry.name === "usr/bin/tool")?.mode).toBe(0o4755);
    expect(entries.find((entry) => entry.name === "high-ids")?.uid).toBe(300000);
    expect(entries.find((entry) => entry.name === "usr/lib/empty")?.mtime).toBe(2_300_000_000);
    expect(names).toContain(LONG_FILE);
    expect(names).toContain("café/naïve ☃.txt");
    expect(names).not.toContain("./");

    // Deterministic order: a directory before its children, siblings in byte order.
    const order = names.map((name) => name.replace(/\/$/, "").split("/"));
    for (let i = 1; i < order.length; i++) {
      const [a, b] = [order[i - 1] as string[], order[i] as string[]];
      let k = 0;
      while (k < a.length && k < b.length && a[k] === b[k]) k++;
      if (k < a.length && k < b.length) {
        expect(Buffer.compare(Buffer.from(a[k] as string), Buffer.from(b[k] as string)), `${names[i - 1]} before ${names[i]}`).toBeLessThan(0);
      } else {
        expect(a.length, `${names[i - 1]} before ${names[i]}`).toBeLessThan(b.length);
      }
    }

    // An independent reader agrees (GNU tar understands the PAX records).
    const listing = run("tar", ["-tzvf", blob.path]);
    expect(listing).toContain(LONG_FILE);
    expect(listing).toMatch(/300000\/300001 .* high-ids/);
    expect(listing).toMatch(/hard\/two link to hard\/one/);
    expect(listing).toMatch(/^c.* 1,3 .*null-device$/m);
    expect(listing).toMatch(/^p.* fifo$/m);
  });

  it("is deterministic: the same tree gives the same digests, and with sourceDateEpoch so do other mtimes", async () => {
    const work = tempDir();
    const big = Buffer.alloc(2 * 1024 * 1024, 7);
    const a = join(work, "a");
    const b = join(work, "b");
    const layerA = makeRichLayer(a, { mtime: 1_700_000_000, bigFile: big });
    const layerB = makeRichLayer(b, { mtime: 1_700_009_999, bigFile: big });

    const once = await writeLayerBlob({ dir: a, opaqueDirs: layerA.opaqueDirs }, join(work, "out1"), { compression: "gzip" });
    const twice = await writeLayerBlob({ dir: a, opaqueDirs: layerA.opaqueDirs }, join(work, "out2"), { compression: "gzip" });
    expect(twice.digest).toBe(once.digest);
    expect(twice.diffId).toBe(once.diffId);

    // Other mtimes, same content: different without an epoch, the same with one before both.
    const other = await writeLayerBlob({ dir: b, opaqueDirs: layerB.opaqueDirs }, join(work, "out3"), { compression: "gzip" });
    expect(other.diffId).not.toBe(once.diffId);
    const epoch = { compression: "gzip" as const, sourceDateEpoch: 1_600_000_000 };
    const clampedA = await writeLayerBlob({ dir: a, opaqueDirs: layerA.opaqueDirs }, join(work, "out4"), epoch);
    const clampedB = await writeLayerBlob({ dir: b, opaqueDirs: layerB.opaqueDirs }, join(work, "out5"), epoch);
    expect(clampedB.digest).toBe(clampedA.digest);
    expect(clampedB.diffId).toBe(clampedA.diffId);
    const entries = await listTar(gunzipSync(readFileSync(clampedA.path)));
    expect(new Set(entries.filter((entry) => !entry.name.includes(".wh.")).map((entry) => entry.mtime))).toEqual(new Set([1_600_000_000]));

    // An epoch later than the files leaves them as they are.
    const late = await writeLayerBlob({ dir: a, opaqueDirs: layerA.opaqueDirs }, join(work, "out6"), { compression: "gzip", sourceDateEpoch: 2_500_000_000 });
    expect(late.diffId).toBe(once.diffId);
  });

  it("gives the same diffId at every gzip level", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(dir);
    writeFileSync(join(dir, "text"), "compressible ".repeat(100_000));
    setAllMtimes(dir, 1_700_000_000);
    const fast = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "gzip", level: 1 });
    const best = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "gzip", level: 9 });
    const plain = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "uncompressed" });
    expect(fast.diffId).toBe(plain.diffId);
    expect(best.diffId).toBe(plain.diffId);
    expect(best.size).toBeLessThan(fast.size);
  });

  it("accepts opaque dirs as image paths and the layer root as opaque", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(join(dir, "etc/apt"), { recursive: true });
    const blob = await writeLayerBlob({ dir, opaqueDirs: ["/etc/apt/", "/"] }, join(work, "out"), { compression: "uncompressed" });
    const names = (await listTar(readFileSync(blob.path))).map((entry) => entry.name);
    expect(names).toEqual([".wh..wh..opq", "etc/", "etc/apt/", "etc/apt/.wh..wh..opq"]);
    const into = join(work, "x");
    expect((await extractLayer(blob.path, blob.mediaType, into)).opaqueDirs).toEqual([".", "etc/apt"]);
  });

  it("refuses an opaque dir the layer does not have, and one outside it", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(join(dir, "etc"), { recursive: true });
    writeFileSync(join(dir, "file"), "x");
    await expect(writeLayerBlob({ dir, opaqueDirs: ["etc/apt"] }, join(work, "out"), { compression: "gzip" })).rejects.toThrow(
      /opaque directory "etc\/apt" is not a directory of layer/,
    );
    await expect(writeLayerBlob({ dir, opaqueDirs: ["file"] }, join(work, "out"), { compression: "gzip" })).rejects.toBeInstanceOf(ExporterError);
    await expect(writeLayerBlob({ dir, opaqueDirs: ["../etc"] }, join(work, "out"), { compression: "gzip" })).rejects.toThrow(/'\.\.'/);
    // Nothing half-written is left behind.
    expect(run("ls", ["-A", join(work, "out")]).trim()).toBe("");
  });

  it("refuses a file whose name would read as a whiteout", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(dir);
    writeFileSync(join(dir, ".wh.sneaky"), "x");
    await expect(writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "gzip" })).rejects.toThrow(
      /\.wh\.sneaky: a file named "\.wh\.\*" cannot be stored in an OCI layer/,
    );
  });

  it("fails clearly on a missing layer directory", async () => {
    const work = tempDir();
    await expect(writeLayerBlob({ dir: join(work, "nope"), opaqueDirs: [] }, join(work, "out"), { compression: "gzip" })).rejects.toThrow(
      /layer directory .*nope cannot be read/,
    );
  });

  it("keeps whiteouts that share one inode (as the layer store makes them) as whiteouts, not hard links", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(dir);
    whiteout(join(dir, "a"));
    run("ln", [join(dir, "a"), join(dir, "b")]);
    const blob = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "uncompressed" });
    expect(await listTar(readFileSync(blob.path))).toMatchObject([
      { name: ".wh.a", type: "file" },
      { name: ".wh.b", type: "file" },
    ]);
  });
});

describe("writeLayerBlob with zstd", () => {
  it("writes zstd frames the zstd CLI decompresses to the same tar, deterministically", async () => {
    requireTools(["zstd"]);
    const work = tempDir();
    const source = join(work, "layer");
    const { opaqueDirs } = makeRichLayer(source, { bigFile: Buffer.alloc(5 * 1024 * 1024, "zstd compresses this ") });
    const once = await writeLayerBlob({ dir: source, opaqueDirs }, join(work, "a"), { compression: "zstd" });
    const twice = await writeLayerBlob({ dir: source, opaqueDirs }, join(work, "b"), { compression: "zstd" });
    expect(twice).toEqual({ ...once, path: join(work, "b", once.digest.slice(7)) });
    expect(readFileSync(twice.path)).toEqual(readFileSync(once.path));
    expect([...readFileSync(once.path).subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);

    run("zstd", ["-q", "-t", once.path]);
    const out = join(work, "layer.tar");
    run("zstd", ["-q", "-d", once.path, "-o", out]);
    expect(sha256(readFileSync(out))).toBe(once.diffId);
    const plain = await writeLayerBlob({ dir: source, opaqueDirs }, join(work, "c"), { compression: "uncompressed" });
    expect(plain.diffId).toBe(once.diffId);
    // GNU tar reads it through the zstd CLI too.
    expect(run("tar", ["--zstd", "-tf", once.path])).toContain("etc/apt/.wh..wh..opq");
  });

  it("gives the bytes zstd gives with any number of worker threads (so digests do not depend on the machine)", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(dir);
    // Several zstd jobs' worth, not too compressible.
    const chunk = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7919) % 251 ^ (i >> 9);
    writeFileSync(join(dir, "data"), Buffer.concat(Array.from({ length: 24 }, (_, i) => Buffer.concat([chunk, Buffer.from(`block ${i}`)]))));
    setAllMtimes(dir, 1_700_000_000);
    const blob = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "zstd" });
    const tar = zstdDecompress(readFileSync(blob.path));
    const compress = async (nbWorkers: number) => {
      const parts: Buffer[] = [];
      const stream = new CompressStream({ compressionLevel: 3, nbWorkers });
      stream.on("data", (part: Buffer) => parts.push(part));
      const done = new Promise((resolve, reject) => stream.on("end", resolve).on("error", reject));
      for (let at = 0; at < tar.length; at += 100_000) stream.write(tar.subarray(at, at + 100_000));
      stream.end();
      await done;
      return Buffer.concat(parts);
    };
    for (const workers of [1, 2, 4]) expect(sha256(await compress(workers)), `nbWorkers ${workers}`).toBe(blob.digest);
  });

  it("applies levels to gzip and zstd and refuses levels out of range", async () => {
    const work = tempDir();
    const dir = join(work, "layer");
    mkdirSync(dir);
    writeFileSync(join(dir, "text"), "compressible, but not entirely: ".repeat(50_000) + Math.random());
    const fast = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "zstd", level: 1 });
    const best = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "out"), { compression: "zstd", level: 19 });
    expect(best.diffId).toBe(fast.diffId);
    expect(best.digest).not.toBe(fast.digest);
    for (const [compression, level, range] of [
      ["zstd", 0, "1 to 22"],
      ["zstd", 23, "1 to 22"],
      ["gzip", 10, "0 to 9"],
      ["gzip", 1.5, "0 to 9"],
    ] as const) {
      const error = await writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "bad"), { compression, level }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "ERR_BAD_OPTION", message: `${compression} compression level ${level} is out of range` });
      expect((error as { hint: string }).hint).toContain(range);
    }
    await expect(writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "bad"), { compression: "brotli" as "gzip" })).rejects.toThrow(/unknown layer compression "brotli"/);
    await expect(writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "bad"), { compression: "gzip", sourceDateEpoch: -1 })).rejects.toMatchObject({ code: "ERR_BAD_OPTION" });
    await expect(writeLayerBlob({ dir, opaqueDirs: [] }, join(work, "bad"), { compression: "gzip", sourceDateEpoch: 1.5 })).rejects.toThrow(/SOURCE_DATE_EPOCH 1.5/);
  });
});
