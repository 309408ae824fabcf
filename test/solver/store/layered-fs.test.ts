import { spawnSync } from "node:child_process";
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { LayeredFS, LayeredFsError, createWhiteout, type LayerView } from "../../../src/solver/store/index.ts";
import { freshDir } from "./helpers.ts";

type Spec = Record<string, string | { dir: true } | { link: string } | { whiteout: true }>;

/** Writes one layer: paths (relative to the layer root) to file contents, dirs, symlinks or whiteouts. */
async function makeLayer(base: string, name: string, spec: Spec, opaqueDirs: string[] = []): Promise<LayerView> {
  const dir = join(base, name);
  mkdirSync(dir, { recursive: true });
  for (const [path, what] of Object.entries(spec)) {
    const host = join(dir, path);
    mkdirSync(join(host, ".."), { recursive: true });
    if (typeof what === "string") writeFileSync(host, what);
    else if ("dir" in what) mkdirSync(host, { recursive: true });
    else if ("link" in what) symlinkSync(what.link, host);
    else await createWhiteout(host, { template: join(base, "whiteout") });
  }
  return { dir, opaqueDirs };
}

const whiteout = { whiteout: true } as const;
const dir = { dir: true } as const;
const link = (target: string) => ({ link: target });

/** The stack most tests use, bottom to top. */
async function sampleStack(base: string): Promise<LayerView[]> {
  return [
    await makeLayer(base, "l0", {
      "etc/passwd": "root:x:0:0\n",
      "etc/hosts": "127.0.0.1 localhost\n",
      "etc/old.conf": "old",
      "usr/lib/os-release": "ID=test\n",
      "usr/bin/sh": "#!sh",
      "var/lib/a/x": "x",
      "var/lib/b": "b",
      "opt/tool/bin/run": "run",
      "srv/file-then-dir": "a file",
      "home/user/.profile": "profile",
      "bin": link("usr/bin"),
    }),
    await makeLayer(
      base,
      "l1",
      {
        "etc/passwd": "root:x:0:0\nuser:x:1000:1000\n",
        "etc/hosts": whiteout,
        "etc/old.conf": whiteout,
        "var/lib/new": "new",
        "opt/tool": "now a file",
        "srv/file-then-dir/inside": "inside",
        "home/user": whiteout,
        "etc/os-release": link("../usr/lib/os-release"),
      },
      ["/var/lib"],
    ),
    await makeLayer(base, "l2", {
      "etc/hosts": "10.0.0.1 again\n",
      "var/lib/c": "c",
      "home/user/new": "fresh",
      "usr/bin/sh": whiteout,
      "usr/bin/bash": "#!bash",
    }),
  ];
}

describe("LayeredFS semantics", () => {
  let fs: LayeredFS;
  let base: string;
  beforeAll(async () => {
    base = freshDir("layered");
    fs = new LayeredFS(await sampleStack(base));
  });

  it("lets upper files hide lower ones", async () => {
    expect((await fs.readFile("/etc/passwd")).toString()).toBe("root:x:0:0\nuser:x:1000:1000\n");
    expect(await fs.hostPath("/etc/passwd")).toBe(join(base, "l1", "etc", "passwd"));
    expect(await fs.hostPath("/usr/lib/os-release")).toBe(join(base, "l0", "usr", "lib", "os-release"));
  });

  it("hides whited-out paths, and shows a path re-created above a whiteout", async () => {
    expect(await fs.lstat("/etc/old.conf")).toBeUndefined();
    expect(await fs.hostPath("/etc/old.conf")).toBeUndefined();
    expect((await fs.readFile("/etc/hosts")).toString()).toBe("10.0.0.1 again\n");
    expect(await fs.readdir("/etc")).toEqual(["hosts", "os-release", "passwd"]);
    expect(await fs.readdir("/usr/bin")).toEqual(["bash"]);
    await expect(fs.readFile("/etc/old.conf")).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("hides the lower contents of a whited-out directory re-created above", async () => {
    expect(await fs.readdir("/home/user")).toEqual(["new"]);
    expect(await fs.lstat("/home/user/.profile")).toBeUndefined();
  });

  it("hides the lower contents of an opaque directory, but not what layers above add", async () => {
    expect(await fs.readdir("/var/lib")).toEqual(["c", "new"]);
    expect(await fs.lstat("/var/lib/a/x")).toBeUndefined();
    expect(await fs.lstat("/var/lib/b")).toBeUndefined();
  });

  it("lets a file hide a lower directory, and a directory replace a lower file", async () => {
    expect(await fs.lstat("/opt/tool")).toMatchObject({ type: "file", size: "now a file".length });
    expect(await fs.lstat("/opt/tool/bin/run")).toBeUndefined();
    await expect(fs.readdir("/opt/tool")).rejects.toMatchObject({ code: "ENOTDIR" });
    expect(await fs.lstat("/srv/file-then-dir")).toMatchObject({ type: "dir" });
    expect(await fs.readdir("/srv/file-then-dir")).toEqual(["inside"]);
  });

  it("merges the root and reports stats", async () => {
    expect(await fs.readdir("/")).toEqual(["bin", "etc", "home", "opt", "srv", "usr", "var"]);
    expect(await fs.lstat("/")).toMatchObject({ type: "dir" });
    const passwd = await fs.lstat("/etc/passwd");
    const host = lstatSync(join(base, "l1", "etc", "passwd"));
    expect(passwd).toEqual({ type: "file", mode: host.mode & 0o7777, uid: host.uid, gid: host.gid, size: host.size, mtimeMs: host.mtimeMs });
    expect(await fs.lstat("/bin")).toMatchObject({ type: "symlink", linkTarget: "usr/bin" });
  });

  it("follows symlinks in parents but not in the last component for lstat, readlink and hostPath", async () => {
    expect(await fs.lstat("/bin/bash")).toMatchObject({ type: "file" });
    expect(await fs.hostPath("/bin/bash")).toBe(join(base, "l2", "usr", "bin", "bash"));
    expect(await fs.readlink("/etc/os-release")).toBe("../usr/lib/os-release");
    expect(await fs.hostPath("/etc/os-release")).toBe(join(base, "l1", "etc", "os-release"));
    await expect(fs.readlink("/etc/passwd")).rejects.toMatchObject({ code: "EINVAL" });
    expect((await fs.readFile("/etc/os-release")).toString()).toBe("ID=test\n");
    expect(await fs.readdir("/bin")).toEqual(["bash"]);
  });

  it("reports errors with codes", async () => {
    await expect(fs.readFile("/etc")).rejects.toMatchObject({ code: "EISDIR" });
    await expect(fs.readdir("/nope")).rejects.toBeInstanceOf(LayeredFsError);
    await expect(fs.readdir("/nope")).rejects.toMatchObject({ code: "ENOENT", path: "/nope" });
    await expect(fs.readlink("/nope")).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("LayeredFS.resolve", () => {
  let fs: LayeredFS;
  beforeAll(async () => {
    const base = freshDir("resolve");
    fs = new LayeredFS([
      await makeLayer(base, "l0", {
        "etc/passwd": "root",
        "usr/lib/os-release": "ID=x",
        "a/b/c": dir,
        "escape": link("../../../../../../etc"),
        "deep/er/up": link("../../../../../../../../.."),
        "abs": link("/etc"),
        "chain1": link("chain2"),
        "chain2": link("/a/b/../chain3"),
        "a/chain3": link("../etc/passwd"),
        "loop1": link("loop2"),
        "loop2": link("/loop1"),
        "self": link("self"),
        "dotdot-after-link": link("a/b/c"),
        "etc/os-release": link("../usr/lib/os-release"),
      }),
      await makeLayer(base, "l1", { "hidden-link": link("/etc"), "gone": whiteout }),
      await makeLayer(base, "l2", { "hidden-link": whiteout }),
    ]);
  });

  it("keeps relative '..' targets inside the root", async () => {
    expect(await fs.resolve("/escape/passwd")).toBe("/etc/passwd");
    expect((await fs.readFile("/escape/passwd")).toString()).toBe("root");
    expect(await fs.resolve("/deep/er/up/etc/passwd")).toBe("/etc/passwd");
    expect(await fs.resolve("/../../etc/../../etc/passwd")).toBe("/etc/passwd");
  });

  it("restarts absolute targets at the image root", async () => {
    expect(await fs.resolve("/abs/passwd")).toBe("/etc/passwd");
    expect(await fs.resolve("/abs")).toBe("/etc");
    expect(await fs.resolve("/abs", { followFinal: false })).toBe("/abs");
    expect(await fs.resolve("/abs/", { followFinal: false })).toBe("/etc");
    expect(await fs.resolve("/abs/.", { followFinal: false })).toBe("/etc");
  });

  it("follows chains, applying '..' to the resolved path", async () => {
    expect(await fs.resolve("/chain1")).toBe("/etc/passwd");
    expect((await fs.readFile("/chain1")).toString()).toBe("root");
    expect(await fs.resolve("/dotdot-after-link/..")).toBe("/a/b");
    expect(await fs.resolve("/etc/os-release")).toBe("/usr/lib/os-release");
  });

  it("returns paths that do not exist, resolved as far as they go", async () => {
    expect(await fs.resolve("/abs/missing/../x")).toBe("/etc/x");
    expect(await fs.resolve("/nope/deeper")).toBe("/nope/deeper");
  });

  it("stops loops with ELOOP", async () => {
    await expect(fs.resolve("/loop1")).rejects.toMatchObject({ code: "ELOOP" });
    await expect(fs.resolve("/self/x")).rejects.toMatchObject({ code: "ELOOP" });
    expect(await fs.resolve("/loop1", { followFinal: false })).toBe("/loop1");
    await expect(fs.readFile("/loop1")).rejects.toThrow(/more than 255 symbolic links/);
  });

  it("does not follow whited-out symlinks", async () => {
    expect(await fs.resolve("/hidden-link/passwd")).toBe("/hidden-link/passwd");
    expect(await fs.lstat("/hidden-link/passwd")).toBeUndefined();
  });

  it("treats an empty stack as an empty root", async () => {
    const empty = new LayeredFS([]);
    expect(await empty.readdir("/")).toEqual([]);
    expect(await empty.lstat("/")).toMatchObject({ type: "dir" });
    expect(await empty.lstat("/x")).toBeUndefined();
  });
});

/**
 * The same stack mounted by the kernel's overlayfs must look exactly like LayeredFS.
 * Needs root and overlayfs; opaque dirs also need a way to set xattrs (setfattr or python3).
 */
describe("LayeredFS against kernel overlayfs", () => {
  it("shows the same tree as a real overlay mount", async (context) => {
    const base = freshDir("overlay");
    const layers = await sampleStack(base);
    const canMarkOpaque = layers.every((layer) => layer.opaqueDirs.every((opaque) => setOpaqueXattr(join(layer.dir, opaque))));
    if (!canMarkOpaque) return context.skip();
    const merged = join(base, "merged");
    mkdirSync(merged);
    const lowerdir = [...layers].reverse().map((layer) => layer.dir).join(":");
    if (spawnSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lowerdir}`, merged]).status !== 0) return context.skip();
    try {
      const fs = new LayeredFS(layers);
      const pending = ["/"];
      let compared = 0;
      for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
        const kernelNames = readdirSync(join(merged, path)).sort();
        expect(await fs.readdir(path), path).toEqual(kernelNames);
        for (const name of kernelNames) {
          const child = path === "/" ? `/${name}` : `${path}/${name}`;
          const kernel = lstatSync(join(merged, child));
          const ours = await fs.lstat(child);
          expect(ours?.type, child).toBe(kernel.isDirectory() ? "dir" : kernel.isSymbolicLink() ? "symlink" : "file");
          expect(ours?.mode, child).toBe(kernel.mode & 0o7777);
          if (kernel.isDirectory()) pending.push(child);
          else if (kernel.isSymbolicLink()) expect(ours?.linkTarget, child).toBe(readlinkSync(join(merged, child)));
          else expect((await fs.readFile(child)).toString(), child).toBe(readFileSync(join(merged, child), "utf8"));
          compared++;
        }
      }
      expect(compared).toBeGreaterThan(15);
    } finally {
      spawnSync("umount", [merged]);
    }
  });
});

function setOpaqueXattr(path: string): boolean {
  if (spawnSync("setfattr", ["-n", "trusted.overlay.opaque", "-v", "y", path]).status === 0) return true;
  const python = spawnSync("python3", ["-c", "import os,sys; os.setxattr(sys.argv[1], 'trusted.overlay.opaque', b'y')", path]);
  return python.status === 0;
}
