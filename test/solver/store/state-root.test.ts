import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { StateRoot, StoreError, isWhiteout } from "../../../src/solver/store/index.ts";
import { backdate, freshDir, mountTmpfs, unmount } from "./helpers.ts";

function sha256(data: string | Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function caught(promise: Promise<unknown>): Promise<StoreError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(StoreError);
  return error as StoreError;
}

describe("StateRoot.open", () => {
  it("creates the layout and a version file", async () => {
    const dir = join(freshDir("open"), "root");
    const root = await StateRoot.open(dir);
    expect(root.dir).toBe(dir);
    for (const sub of ["tmp", "content/blobs/sha256", "cache", "snapshots", "locks/leases", "locks/pruning"]) {
      expect(statSync(join(dir, sub)).isDirectory()).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(dir, "state-root.json"), "utf8"))).toEqual({ layoutVersion: 1 });
    await StateRoot.open(dir); // reopening is fine
  });

  it("removes temp entries of dead processes and keeps those of live ones", async () => {
    const dir = freshDir("stale");
    const root = await StateRoot.open(dir);
    const mine = root.tempPath("mine");
    await mkdir(join(mine, "deep"), { recursive: true });
    const deadPid = 2 ** 22 + 7; // above pid_max: never a live process
    await mkdir(join(dir, "tmp", `${deadPid}-0-abc-layer-x`, "fs"), { recursive: true });
    await writeFile(join(dir, "tmp", `${deadPid}-0-def-record`), "partial");
    // Entries of another pid namespace cannot be checked by pid: removed only once a day old.
    await writeFile(join(dir, "tmp", `${deadPid}-1-recent-foreign`), "");
    await writeFile(join(dir, "tmp", `${deadPid}-1-old-foreign`), "");
    await backdate(join(dir, "tmp", `${deadPid}-1-old-foreign`), 25 * 3_600_000);
    await StateRoot.open(dir);
    expect(readdirSync(join(dir, "tmp")).sort()).toEqual([`${deadPid}-1-recent-foreign`, mine.slice(mine.lastIndexOf("/") + 1)].sort());
  });

  it("refuses a root written by a newer layout", async () => {
    const dir = freshDir("version");
    writeFileSync(join(dir, "state-root.json"), JSON.stringify({ layoutVersion: 99 }));
    const error = await caught(StateRoot.open(dir));
    expect(error.code).toBe("ELAYOUT");
    expect(error.message).toContain("newer tsbuild");
    expect(error.hint).toContain("--root");
  });

  it("explains a root below a file", async () => {
    const file = join(freshDir("notdir"), "file");
    writeFileSync(file, "");
    const error = await caught(StateRoot.open(join(file, "root")));
    expect(error.code).toBe("ENOTDIR");
    expect(error.message).toContain(file);
  });

  it("explains a read-only root", async (context) => {
    const dir = freshDir("readonly");
    if (!mountTmpfs(dir, "ro,size=1m")) return context.skip();
    try {
      const error = await caught(StateRoot.open(join(dir, "root")));
      expect(error.code).toBe("EROFS");
      expect(error.message).toContain(join(dir, "root"));
      expect(error.message).toContain("read-only");
      expect(error.hint).toContain("--root");
    } finally {
      unmount(dir);
    }
  });

  it("explains an unwritable root", async (context) => {
    // root bypasses permission checks: open as "nobody" in another process
    if (process.getuid?.() !== 0) return context.skip();
    const dir = freshDir("perm");
    chmodSync(dir, 0o755);
    const store = join(import.meta.dirname, "../../../src/solver/store/index.ts");
    const script = `const { StateRoot } = await import(${JSON.stringify(store)});
      await StateRoot.open(${JSON.stringify(join(dir, "root"))}).then(
        () => console.log("{}"),
        (error) => console.log(JSON.stringify({ code: error.code, message: error.message, hint: error.hint })),
      );`;
    const result = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      uid: 65534,
      gid: 65534,
      encoding: "utf8",
      cwd: join(import.meta.dirname, "../../.."),
    });
    expect(result.stderr).toBe("");
    const error = JSON.parse(result.stdout) as { code: string; message: string; hint: string };
    expect(error.code).toBe("EACCES");
    expect(error.message).toBe(`cannot create the state directory ${join(dir, "root")}: permission denied`);
    expect(error.hint).toContain("--root DIR");
  });
});

describe("blobs", () => {
  it("stores content by digest, once", async () => {
    const root = await StateRoot.open(freshDir("blobs"));
    const digest = await root.writeBlob("hello");
    expect(digest).toBe(sha256("hello"));
    expect(readFileSync(root.blobPath(digest), "utf8")).toBe("hello");
    expect(await root.writeBlob(Buffer.from("hello"))).toBe(digest);
    expect(await root.hasBlob(digest)).toBe(true);
    expect(await root.hasBlob(sha256("other"))).toBe(false);
    expect(statSync(root.blobPath(digest)).mode & 0o777).toBe(0o444);
  });

  it("copies a file from elsewhere and moves one from tmp/", async () => {
    const root = await StateRoot.open(freshDir("blob-files"));
    const outside = join(freshDir("blob-src"), "layer.tar");
    writeFileSync(outside, "outside data");
    expect(await root.writeBlobFromFile(outside, sha256("outside data"))).toBe(sha256("outside data"));
    expect(existsSync(outside)).toBe(true);

    const inside = root.tempPath("download");
    writeFileSync(inside, "downloaded");
    const digest = await root.writeBlobFromFile(inside);
    expect(digest).toBe(sha256("downloaded"));
    expect(existsSync(inside)).toBe(false);
    expect(readFileSync(root.blobPath(digest), "utf8")).toBe("downloaded");
  });

  it("moves a verified download from tmp/ in without reading it, and trusts nothing from elsewhere", async () => {
    const root = await StateRoot.open(freshDir("adopt"));
    const inside = root.tempPath("download");
    writeFileSync(inside, "streamed and hashed");
    expect(await root.writeBlobFromFile(inside, sha256("streamed and hashed"), { verified: true })).toBe(sha256("streamed and hashed"));
    expect(existsSync(inside)).toBe(false);
    expect(readFileSync(root.blobPath(sha256("streamed and hashed")), "utf8")).toBe("streamed and hashed");
    expect(statSync(root.blobPath(sha256("streamed and hashed"))).mode & 0o777).toBe(0o444);
    // Outside tmp/ the bytes are copied, and checked while copied, whatever the caller says.
    const outside = join(freshDir("adopt-src"), "x");
    writeFileSync(outside, "x");
    expect((await caught(root.writeBlobFromFile(outside, sha256("not x"), { verified: true }))).code).toBe("EDIGEST");
    expect(existsSync(outside)).toBe(true);
    expect(existsSync(root.blobPath(sha256("not x")))).toBe(false);
  });

  it("verifies sha512 digests too", async () => {
    const root = await StateRoot.open(freshDir("sha512"));
    const file = join(freshDir("sha512-src"), "x");
    writeFileSync(file, "abc");
    const expected = `sha512:${createHash("sha512").update("abc").digest("hex")}`;
    expect(await root.writeBlobFromFile(file, expected)).toBe(expected);
    expect(await root.hasBlob(expected)).toBe(true);
  });

  it("rejects a wrong expected digest and stores nothing", async () => {
    const dir = freshDir("digest");
    const root = await StateRoot.open(dir);
    const wrong = sha256("something else");
    for (const source of [join(freshDir("digest-src"), "blob"), root.tempPath("download")]) {
      writeFileSync(source, "actual content");
      const error = await caught(root.writeBlobFromFile(source, wrong));
      expect(error.code).toBe("EDIGEST");
      expect(error.message).toBe(`digest mismatch for ${source}: expected ${wrong}, got ${sha256("actual content")}; nothing was stored`);
      expect(error.hint).toContain("fetch it again");
      expect(readFileSync(source, "utf8")).toBe("actual content"); // left as it was
    }
    expect(readdirSync(join(dir, "content/blobs/sha256"))).toEqual([]);
    expect(readdirSync(join(dir, "tmp")).filter((name) => !name.includes("download"))).toEqual([]);
  });

  it("rejects malformed digests", async () => {
    const root = await StateRoot.open(freshDir("bad-digest"));
    expect(() => root.blobPath("sha256:../../etc/passwd")).toThrow(/invalid digest/);
    expect(() => root.blobPath("md5:abc")).toThrow(StoreError);
  });

  it("reports a full disk clearly and leaves no partial blob", async (context) => {
    const dir = freshDir("full");
    if (!mountTmpfs(dir, "size=256k")) return context.skip();
    try {
      const root = await StateRoot.open(dir);
      const error = await caught(root.writeBlob(Buffer.alloc(1024 * 1024, 1)));
      expect(error.code).toBe("ENOSPC");
      expect(error.message).toMatch(/^cannot write .*content\/blobs\/sha256\/[0-9a-f]{64}: no space left on the device$/);
      expect(error.hint).toContain("tsbuild prune");
      expect(readdirSync(join(dir, "content/blobs/sha256"))).toEqual([]);
      expect(readdirSync(join(dir, "tmp"))).toEqual([]);
    } finally {
      unmount(dir);
    }
  });
});

describe("cache records", () => {
  it("stores and returns records, bumping lastUsedAt", async () => {
    const root = await StateRoot.open(freshDir("records"));
    await root.createLayer("base", async (fsDir) => writeFile(join(fsDir, "a"), "a"));
    await root.createLayer("top", async (fsDir) => writeFile(join(fsDir, "b"), "b"));
    const key = sha256("step");
    expect(await root.getCacheRecord(key)).toBeUndefined();
    const before = Date.now();
    await root.putCacheRecord({ key, layers: ["base", "top"], description: "RUN make" });
    const record = await root.getCacheRecord(key);
    expect(record).toMatchObject({ key, layers: ["base", "top"], description: "RUN make" });
    expect(record!.createdAt).toBeGreaterThanOrEqual(before);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const again = await root.getCacheRecord(key);
    expect(again!.lastUsedAt).toBeGreaterThan(record!.lastUsedAt);
    expect(again!.createdAt).toBe(record!.createdAt);
    const hex = key.slice("sha256:".length);
    expect(existsSync(join(root.dir, "cache", hex.slice(0, 2), `${key}.json`))).toBe(true);
  });

  it("refuses records that list missing layers, and misses when a layer disappeared", async () => {
    const root = await StateRoot.open(freshDir("records-missing"));
    const error = await caught(root.putCacheRecord({ key: sha256("x"), layers: ["nope"], description: "" }));
    expect(error.code).toBe("ENOLAYER");
    await root.createLayer("gone", async () => undefined);
    await root.putCacheRecord({ key: sha256("y"), layers: ["gone"], description: "" });
    const { rm } = await import("node:fs/promises");
    await rm(join(root.dir, "snapshots", "gone"), { recursive: true });
    expect(await root.getCacheRecord(sha256("y"))).toBeUndefined();
  });

  it("rejects keys that are not safe file names", async () => {
    const root = await StateRoot.open(freshDir("keys"));
    await expect(root.getCacheRecord("../../etc/passwd")).rejects.toThrow(/invalid cache key/);
    await expect(root.getCacheRecord("a/b")).rejects.toThrow(StoreError);
  });
});

describe("layers", () => {
  it("creates a layer atomically with its size and opaque dirs", async () => {
    const root = await StateRoot.open(freshDir("layers"));
    expect(await root.hasLayer("l1")).toBe(false);
    const info = await root.createLayer("l1", async (fsDir) => {
      await mkdir(join(fsDir, "etc", "conf.d"), { recursive: true });
      await writeFile(join(fsDir, "etc", "hostname"), "box\n");
      await writeFile(join(fsDir, "etc", "conf.d", "a"), "12345");
      await root.createWhiteout(join(fsDir, "etc", "removed"));
      return { opaqueDirs: ["etc/conf.d/"] };
    });
    expect(info).toMatchObject({ id: "l1", dir: join(root.dir, "snapshots", "l1", "fs"), size: 9, opaqueDirs: ["/etc/conf.d"] });
    expect(await root.hasLayer("l1")).toBe(true);
    expect(await root.layerInfo("l1")).toEqual(info);
    expect(isWhiteout(statSync(join(info.dir, "etc", "removed")))).toBe(true);
    expect(readdirSync(join(root.dir, "tmp"))).toEqual([]);
  });

  it("returns the existing layer without filling again", async () => {
    const root = await StateRoot.open(freshDir("layers-again"));
    await root.createLayer("same", async (fsDir) => writeFile(join(fsDir, "v"), "1"));
    let called = false;
    const info = await root.createLayer("same", async (fsDir) => {
      called = true;
      await writeFile(join(fsDir, "v"), "2");
    });
    expect(called).toBe(false);
    expect(await readFile(join(info.dir, "v"), "utf8")).toBe("1");
  });

  it("leaves nothing behind when fill fails", async () => {
    const root = await StateRoot.open(freshDir("layers-fail"));
    await expect(
      root.createLayer("broken", async (fsDir) => {
        await writeFile(join(fsDir, "half"), "x");
        throw new Error("step failed");
      }),
    ).rejects.toThrow("step failed");
    expect(await root.hasLayer("broken")).toBe(false);
    expect(readdirSync(join(root.dir, "snapshots"))).toEqual([]);
    expect(readdirSync(join(root.dir, "tmp"))).toEqual([]);
  });

  it("rejects opaque dirs that are not directories of the layer", async () => {
    const root = await StateRoot.open(freshDir("layers-opaque"));
    await expect(root.createLayer("o", async () => ({ opaqueDirs: ["/nope"] }))).rejects.toThrow(/opaque dir \/nope is not a directory/);
    expect(await root.hasLayer("o")).toBe(false);
  });

  it("replaces a layer directory left without meta.json", async () => {
    const root = await StateRoot.open(freshDir("layers-debris"));
    await mkdir(join(root.dir, "snapshots", "debris", "fs", "half"), { recursive: true });
    const info = await root.createLayer("debris", async (fsDir) => writeFile(join(fsDir, "ok"), "ok"));
    expect(readdirSync(info.dir)).toEqual(["ok"]);
  });

  it("explains a missing layer", async () => {
    const root = await StateRoot.open(freshDir("layers-missing"));
    const error = await caught(root.layerInfo("missing"));
    expect(error.code).toBe("ENOLAYER");
    expect(error.message).toBe(`layer missing does not exist in ${join(root.dir, "snapshots")}`);
    await expect(root.hasLayer("../x")).rejects.toThrow(/invalid layer id/);
    await expect(root.hasLayer("sha256:abc")).rejects.toThrow(/no ":", which overlayfs mount options reserve/);
  });
});
