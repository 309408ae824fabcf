import { spawn } from "node:child_process";
import { lstatSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bin, busyboxLayout, project, requireBuiltCli, requireBusyboxImage, temp, tsbuild } from "./helpers.ts";

/*
 * A copy may hard-link a file that already is in another layer exactly as the copy would
 * write it. These tests check that it happens, and that nothing can tell: the image is the
 * one a fresh build makes, and no layer ever changes.
 */

beforeAll(requireBuiltCli);

/** Directories a build creates get its time, clamped to SOURCE_DATE_EPOCH: comparable images need one. */
const epoch = String(Math.floor(Date.now() / 1000) - 60);

function build(dir: string, root: string, extra: string[] = []) {
  const result = tsbuild(["build", "--root", root, "--progress", "plain", ...extra, dir], { env: { SOURCE_DATE_EPOCH: epoch } });
  if (result.code !== 0) throw new Error(`tsbuild build failed (${result.code}):\n${result.stderr}`);
  return result;
}

/** The layer diffIds of the image in an OCI layout. */
function diffIds(layout: string): string[] {
  const blob = (digest: string) => JSON.parse(readFileSync(join(layout, "blobs", ...digest.split(":")), "utf8"));
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8"));
  const manifest = blob(index.manifests[0].digest);
  return blob(manifest.config.digest).rootfs.diff_ids;
}

/** Every copy of an image path among the root's layers: its inode and content. */
function copiesInLayers(root: string, imagePath: string): { ino: number; content: string }[] {
  const copies = [];
  for (const id of readdirSync(join(root, "snapshots"))) {
    const path = join(root, "snapshots", id, "fs", imagePath);
    try {
      if (!lstatSync(path).isFile()) continue;
    } catch {
      continue;
    }
    copies.push({ ino: statSync(path).ino, content: readFileSync(path, "utf8") });
  }
  return copies;
}

/** Gives every file and directory of a context one old mtime (with a fraction), which images then keep (it is before the epoch). */
function settle(dir: string): string {
  const old = 1_577_836_800.5;
  const visit = (path: string) => {
    if (lstatSync(path).isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
    if (!lstatSync(path).isSymbolicLink()) utimesSync(path, old, old);
  };
  visit(dir);
  return dir;
}

function manyFiles(count: number, prefix = "many"): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < count; i++) files[`${prefix}/${i % 2 ? "sub/" : ""}f${i}.txt`] = `file ${i}\n`;
  return files;
}

describe("copies that link", () => {
  it("link a rebuilt step's unchanged files from its last layer, and give the image a fresh build gives", () => {
    const dir = settle(
      project({
        Dockerfile: "FROM scratch\nCOPY many/ /m/\nCOPY big/ /big/\n",
        ...manyFiles(100),
        "big/a.bin": "a".repeat(100_000),
        "big/b.bin": "b".repeat(100_000),
      }),
    );
    const root = temp("root");
    build(dir, root);
    writeFileSync(join(dir, "many", "sub", "f1.txt"), "changed\n");
    writeFileSync(join(dir, "big", "b.bin"), "B".repeat(100_000));
    settle(dir);
    const incremental = join(temp("layout"), "image");
    const rebuilt = build(dir, root, ["-o", `type=oci-layout,dest=${incremental}`]).stderr;
    expect(rebuilt).toMatch(/COPY many\/ \/m\/\n#\d+ DONE/);

    // Unchanged files: one inode in both runs' layers; changed ones: their own.
    const unchanged = copiesInLayers(root, "m/f0.txt");
    expect(unchanged).toHaveLength(2);
    expect(unchanged[0]?.ino).toBe(unchanged[1]?.ino);
    expect(new Set(copiesInLayers(root, "big/a.bin").map((copy) => copy.ino)).size).toBe(1);
    const changed = copiesInLayers(root, "m/sub/f1.txt");
    expect(new Set(changed.map((copy) => copy.content))).toEqual(new Set(["file 1\n", "changed\n"]));
    expect(changed[0]?.ino).not.toBe(changed[1]?.ino);
    expect(new Set(copiesInLayers(root, "big/b.bin").map((copy) => copy.ino)).size).toBe(2);

    const fresh = join(temp("layout"), "image");
    build(dir, temp("root"), ["-o", `type=oci-layout,dest=${fresh}`]);
    expect(diffIds(incremental)).toEqual(diffIds(fresh));
  });

  it("never link a file whose content changed while its size and mtime stayed the same", () => {
    const dir = settle(project({ Dockerfile: "FROM scratch\nCOPY many/ /m/\n", ...manyFiles(80) }));
    const file = join(dir, "many", "f0.txt");
    const root = temp("root");
    build(dir, root);
    writeFileSync(file, "file X\n");
    settle(dir);
    const dest = temp("out");
    build(dir, root, ["-o", dest]);
    expect(readFileSync(join(dest, "m", "f0.txt"), "utf8")).toBe("file X\n");
  });

  it("copy what a later source no longer replaces, instead of linking what it wrote", () => {
    const files: Record<string, string> = { Dockerfile: "FROM scratch\nCOPY one/ two/ /d/\n", ...manyFiles(70, "one"), ...manyFiles(70, "two") };
    files["one/x"] = "from one\n";
    const dir = project(files);
    symlinkSync("f0.txt", join(dir, "two", "x"));
    const root = temp("root");
    const first = temp("out");
    build(dir, root, ["-o", first]);
    expect(lstatSync(join(first, "d", "x")).isSymbolicLink()).toBe(true);
    rmSync(join(dir, "two", "x"));
    const second = temp("out");
    build(dir, root, ["-o", second]);
    expect(lstatSync(join(second, "d", "x")).isFile()).toBe(true);
    expect(readFileSync(join(second, "d", "x"), "utf8")).toBe("from one\n");
  });

  it("never follow a symlink that replaced a directory in the last layer (it could point at the host's /etc)", () => {
    const files: Record<string, string> = { Dockerfile: "FROM scratch\nCOPY one/ two/ /dest/\n", ...manyFiles(70, "one") };
    files["one/a/passwd"] = "from the context\n";
    files["two/b"] = "b\n";
    const dir = project(files);
    symlinkSync("/etc", join(dir, "two", "a"));
    const root = temp("root");
    build(dir, root);
    rmSync(join(dir, "two", "a"));
    const dest = temp("out");
    build(dir, root, ["-o", dest]);
    expect(lstatSync(join(dest, "dest", "a")).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, "dest", "a", "passwd"), "utf8")).toBe("from the context\n");
    for (const id of readdirSync(join(root, "snapshots"))) {
      // The first run's layer holds the symlink itself: look below real directories only.
      if (!lstatSync(join(root, "snapshots", id, "fs", "dest", "a"), { throwIfNoEntry: false })?.isDirectory()) continue;
      expect(statSync(join(root, "snapshots", id, "fs", "dest", "a", "passwd")).ino).not.toBe(statSync("/etc/passwd").ino);
    }
  });

  it("link COPY --from files from the stage's layers, unless --chown or --chmod changes them", () => {
    const dir = settle(
      project({
        Dockerfile: "FROM scratch AS a\nCOPY many/ /m/\nFROM scratch\nCOPY --from=a /m/ /copy/\nCOPY --from=a --chown=5:6 /m/ /owned/\nCOPY --from=a --chmod=600 /m/ /private/\n",
        ...manyFiles(90),
      }),
    );
    const root = temp("root");
    const layout = join(temp("layout"), "image");
    const dest = temp("out");
    build(dir, root, ["-o", `type=oci-layout,dest=${layout}`, "-o", dest]);
    const source = copiesInLayers(root, "m/sub/f1.txt");
    expect(source).toHaveLength(1);
    expect(copiesInLayers(root, "copy/sub/f1.txt")[0]?.ino).toBe(source[0]?.ino);
    expect(copiesInLayers(root, "owned/sub/f1.txt")[0]?.ino).not.toBe(source[0]?.ino);
    expect(copiesInLayers(root, "private/sub/f1.txt")[0]?.ino).not.toBe(source[0]?.ino);
    const layerFile = (path: string) => readdirSync(join(root, "snapshots")).map((id) => join(root, "snapshots", id, "fs", path)).find((file) => lstatSync(file, { throwIfNoEntry: false }));
    expect(statSync(layerFile("owned/sub/f1.txt") ?? "").uid).toBe(5);
    expect(statSync(layerFile("private/sub/f1.txt") ?? "").mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dest, "copy", "sub", "f1.txt"), "utf8")).toBe("file 1\n");

    const fresh = join(temp("layout"), "image");
    build(dir, temp("root"), ["--no-cache", "-o", `type=oci-layout,dest=${fresh}`]);
    expect(diffIds(layout)).toEqual(diffIds(fresh));
  });

  it("never show one inode at two paths of an image: what the base already shows is copied", () => {
    const dir = project({
      Dockerfile: [
        "FROM scratch AS a",
        "COPY many/ /m/",
        "FROM a AS same",
        "COPY --from=a /m/ /copy/",
        "FROM scratch AS parts",
        "COPY --from=a /m/sub/ /part/",
        "COPY --from=a /m/ /whole/",
        "COPY --from=a /m/ /m/sub/ /twice/",
        "FROM scratch",
        "COPY --from=a /m/ /x/",
        "COPY --from=a /m/ /y/",
        "COPY --from=same /copy/ /z/",
        "",
      ].join("\n"),
      ...manyFiles(140),
    });
    const root = temp("root");
    const dest = temp("out");
    build(dir, root, ["-o", dest]);
    const inode = (path: string) => copiesInLayers(root, path)[0]?.ino;
    expect(inode("copy/f0.txt")).not.toBe(inode("m/f0.txt"));
    expect(inode("x/f0.txt")).toBe(inode("m/f0.txt"));
    expect(inode("y/f0.txt")).not.toBe(inode("m/f0.txt"));
    expect(inode("z/f0.txt")).not.toBe(inode("m/f0.txt"));
    expect(inode("z/f0.txt")).not.toBe(inode("y/f0.txt"));
    for (const top of ["x", "y", "z"]) expect(statSync(join(dest, top, "f0.txt")).nlink).toBe(1);
    // Per inode, not per layer: the files of /m that /part does not show are linked.
    build(dir, root, ["--target", "parts"]);
    expect(inode("part/f1.txt")).toBe(inode("m/sub/f1.txt"));
    expect(inode("whole/sub/f1.txt")).not.toBe(inode("m/sub/f1.txt"));
    expect(inode("whole/f0.txt")).toBe(inode("m/f0.txt"));
    expect(new Set([inode("twice/f1.txt"), inode("twice/sub/f1.txt")]).size).toBe(2);
    const same = temp("out");
    build(dir, root, ["--target", "same", "-o", same]);
    expect(statSync(join(same, "copy", "f0.txt")).nlink).toBe(1);
    expect(readFileSync(join(same, "copy", "sub", "f1.txt"), "utf8")).toBe("file 1\n");
  });

  it("leave a linked file's first layer untouched when a RUN step changes it", () => {
    requireBusyboxImage();
    const dir = project({ Dockerfile: "FROM busybox\nCOPY many/ /m/\nRUN echo more >> /m/f0.txt && chmod 600 /m/f2.txt\n", ...manyFiles(80) });
    const root = temp("root");
    const context = ["--build-context", `busybox=oci-layout://${busyboxLayout}:latest`];
    build(dir, root, context);
    writeFileSync(join(dir, "many", "f4.txt"), "edited\n");
    const dest = temp("out");
    build(dir, root, [...context, "-o", dest]);
    expect(readFileSync(join(dest, "m", "f0.txt"), "utf8")).toBe("file 0\nmore\n");
    for (const copy of copiesInLayers(root, "m/f0.txt")) expect(["file 0\n", "file 0\nmore\n"]).toContain(copy.content);
    const copyLayers = copiesInLayers(root, "m/f0.txt").filter((copy) => copy.content === "file 0\n");
    expect(copyLayers).toHaveLength(2);
    expect(copyLayers[0]?.ino).toBe(copyLayers[1]?.ino);
    for (const id of readdirSync(join(root, "snapshots"))) {
      const path = join(root, "snapshots", id, "fs", "m", "f2.txt");
      const stats = lstatSync(path, { throwIfNoEntry: false });
      if (stats?.isFile() && stats.nlink > 1) expect(stats.mode & 0o777).toBe(0o644);
    }
  });

  it("count a linked file once in du, as the disk does", () => {
    const files: Record<string, string> = { Dockerfile: "FROM scratch\nCOPY many/ /m/\n" };
    for (let i = 0; i < 100; i++) files[`many/f${i}`] = `${i}`.padEnd(10_000, "x");
    const dir = project(files);
    const root = temp("root");
    build(dir, root);
    writeFileSync(join(dir, "many", "f0"), "changed");
    build(dir, root);
    // What the layers take on disk: regular files and symlinks, each inode once.
    const inodes = new Map<number, number>();
    const walk = (path: string) => {
      for (const entry of readdirSync(path, { withFileTypes: true })) {
        const child = join(path, entry.name);
        if (entry.isDirectory()) walk(child);
        else if (entry.isFile() || entry.isSymbolicLink()) inodes.set(lstatSync(child).ino, lstatSync(child).size);
      }
    };
    for (const id of readdirSync(join(root, "snapshots"))) walk(join(root, "snapshots", id, "fs"));
    const onDisk = [...inodes.values()].reduce((sum, size) => sum + size, 0);
    const line = tsbuild(["du", "--root", root]).stdout.split("\n").find((text) => text.startsWith("layers")) ?? "";
    const match = /([\d.]+) (B|KiB|MiB|GiB)\s*$/.exec(line);
    const units: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
    const reported = Number(match?.[1]) * (units[match?.[2] ?? ""] ?? NaN);
    expect(onDisk).toBeLessThan(1_100_000);
    expect(Math.abs(reported - onDisk) / onDisk).toBeLessThan(0.05);
  });

  it("let concurrent rebuilds on one root link from the same layer, and kill -9 in the middle leave a store that builds", async () => {
    const dir = project({ Dockerfile: "FROM scratch\nCOPY many/ /m/\n", ...manyFiles(400) });
    const root = temp("root");
    build(dir, root);
    const run = (args: string[]) =>
      new Promise<number | null>((resolve) => spawn(process.execPath, [bin, "build", "--root", root, "--progress", "quiet", ...args, dir], { stdio: "ignore" }).once("exit", resolve));
    writeFileSync(join(dir, "many", "f0.txt"), "both\n");
    const outs = [temp("out"), temp("out")];
    expect(await Promise.all(outs.map((out) => run(["-o", out])))).toEqual([0, 0]);
    for (const out of outs) {
      expect(readFileSync(join(out, "m", "f0.txt"), "utf8")).toBe("both\n");
      expect(readFileSync(join(out, "m", "sub", "f399.txt"), "utf8")).toBe("file 399\n");
    }
    // Killed while it links: the next build finds a consistent store and record.
    writeFileSync(join(dir, "many", "f2.txt"), "killed\n");
    const child = spawn(process.execPath, [bin, "build", "--root", root, "--progress", "plain", dir], { stdio: ["ignore", "ignore", "pipe"] });
    await new Promise<void>((resolve) => {
      child.stderr.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("COPY many/")) child.kill("SIGKILL");
      });
      child.once("exit", () => resolve());
    });
    const dest = temp("out");
    build(dir, root, ["-o", dest]);
    expect(readFileSync(join(dest, "m", "f2.txt"), "utf8")).toBe("killed\n");
    expect(readFileSync(join(dest, "m", "f0.txt"), "utf8")).toBe("both\n");
    expect(tsbuild(["du", "--root", root]).code).toBe(0);
    expect(tsbuild(["prune", "--all", "--root", root]).code).toBe(0);
    build(dir, root);
  });

  it("copy everything after prune removed the last layer, and prune removes the record of it", () => {
    const dir = project({ Dockerfile: "FROM scratch\nCOPY many/ /m/\n", ...manyFiles(80) });
    const root = temp("root");
    build(dir, root);
    expect(readdirSync(join(root, "reuse"))).not.toHaveLength(0);
    expect(tsbuild(["prune", "--all", "--root", root]).code).toBe(0);
    expect(readdirSync(join(root, "reuse")).flatMap((shard) => readdirSync(join(root, "reuse", shard)))).toHaveLength(0);
    writeFileSync(join(dir, "many", "f0.txt"), "after prune\n");
    const dest = temp("out");
    build(dir, root, ["-o", dest]);
    expect(readFileSync(join(dest, "m", "f0.txt"), "utf8")).toBe("after prune\n");
    expect(readFileSync(join(dest, "m", "f2.txt"), "utf8")).toBe("file 2\n");
  });
});
