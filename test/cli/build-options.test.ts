import { spawn, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bin, project, requireBuiltCli, temp, tsbuild } from "./helpers.ts";





function ranSteps(stderr: string): number {
  return stderr.split("\n").filter((line) => /^#\d+ DONE/.test(line)).length;
}

beforeAll(requireBuiltCli);

describe("build options", () => {
  it("--no-cache runs every step; --no-cache-filter only the named stage's", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: "FROM scratch AS a\nCOPY a /a\nFROM scratch\nCOPY b /b\nCOPY --from=a /a /a\n", a: "a", b: "b" });
    expect(ranSteps(tsbuild(["build", "--root", root, "--progress", "plain", dir]).stderr)).toBe(3);
    expect(ranSteps(tsbuild(["build", "--root", root, "--progress", "plain", dir]).stderr)).toBe(0);
    expect(ranSteps(tsbuild(["build", "--root", root, "--progress", "plain", "--no-cache", dir]).stderr)).toBe(3);
    const filtered = tsbuild(["build", "--root", root, "--progress", "plain", "--no-cache-filter", "a", dir]).stderr;
    const stepNumber = (name: string) => new RegExp(`#(\\d+) \\[${name}`).exec(filtered)?.[1];
    // Stage a runs again; what copies from it stays cached because the files it copies are the same.
    expect(filtered).toContain(`#${stepNumber("a 2/2\\] COPY a")} DONE`);
    expect(filtered).toContain(`#${stepNumber("stage-1 3/3\\] COPY --from=a")} CACHED`);
    expect(filtered).toContain(`#${stepNumber("stage-1 2/3\\] COPY b")} CACHED`);
  });

  it("keeps COPY --from cached when the stage reran but the copied files are the same", () => {
    const root = temp("root");
    const dir = project({
      Dockerfile: "FROM scratch AS build\nCOPY src/ /src/\nFROM scratch\nCOPY --from=build /src/keep.txt /keep.txt\nCOPY --from=build /src/other.txt /other.txt\n",
      "src/keep.txt": "keep",
      "src/other.txt": "one",
    });
    expect(ranSteps(tsbuild(["build", "--root", root, "--progress", "plain", dir]).stderr)).toBe(3);
    writeFileSync(join(dir, "src", "other.txt"), "two");
    const rebuilt = tsbuild(["build", "--root", root, "--progress", "plain", dir]).stderr;
    expect(rebuilt).toMatch(/\[build 2\/2\] COPY src\/ \/src\/\n#\d+ DONE/);
    expect(rebuilt).toMatch(/COPY --from=build \/src\/keep\.txt \/keep\.txt\n#\d+ CACHED/);
    expect(rebuilt).toMatch(/COPY --from=build \/src\/other\.txt \/other\.txt\n#\d+ DONE/);
  });

  it("copies large directories from another stage, owners and modes kept", () => {
    const files: Record<string, string> = { Dockerfile: "FROM scratch AS a\nCOPY --chown=7:8 many/ /m/\nCOPY extra.txt /m/sub/\nFROM scratch\nCOPY --from=a /m/ /copy/\n", "extra.txt": "extra" };
    for (let i = 0; i < 120; i++) files[`many/${i % 3 ? "sub/" : ""}f${i}`] = `n${i}`;
    const dir = project(files);
    const layout = join(temp("layout"), "image");
    const dest = temp("out");
    const result = tsbuild(["build", "--root", temp("root"), "--progress", "quiet", "-o", dest, "-o", `type=oci-layout,dest=${layout}`, dir]);
    expect(result.stderr).toBe("");
    expect(readdirSync(join(dest, "copy", "sub"))).toHaveLength(81);
    expect(readFileSync(join(dest, "copy", "sub", "extra.txt"), "utf8")).toBe("extra");
    expect(readFileSync(join(dest, "copy", "f0"), "utf8")).toBe("n0");
    const listing = readdirSync(join(layout, "blobs", "sha256"))
      .map((blob) => spawnSync("tar", ["--numeric-owner", "-tvzf", join(layout, "blobs", "sha256", blob)], { encoding: "utf8" }).stdout ?? "")
      .join("");
    expect(listing).toMatch(/7\/8 +\d+ \S+ \S+ copy\/sub\/f1\n/);
    expect(listing).toMatch(/0\/0 +\d+ \S+ \S+ copy\/sub\/extra\.txt\n/);
  });

  it("explains a local export destination it cannot write, without a stack trace", () => {
    const dest = temp("readonly");
    expect(spawnSync("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dest]).status).toBe(0);
    try {
      const dir = project({ Dockerfile: "FROM scratch\nCOPY a /a\n", a: "a" });
      const result = tsbuild(["build", "--root", temp("root"), "--progress", "quiet", "-o", `type=local,dest=${dest}`, dir]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`error: cannot export the filesystem to ${dest}: .*read-only file system`, "i"));
      expect(result.stderr).not.toContain("export-local");
      expect(result.stderr).toContain("hint: check that the destination can be written");
      expect(result.stderr).not.toMatch(/\n\s+at /);
    } finally {
      spawnSync("umount", [dest]);
    }
  });

  it("never writes through a symlink already in an export destination", () => {
    const outside = temp("outside");
    const dest = temp("out");
    symlinkSync(outside, join(dest, "x"));
    const dir = project({ Dockerfile: "FROM scratch\nCOPY x/ /x/\n", "x/passwd": "from the image" });
    expect(tsbuild(["build", "--root", temp("root"), "--progress", "quiet", "-o", dest, dir]).code).toBe(0);
    expect(readdirSync(outside)).toEqual([]);
    expect(readFileSync(join(dest, "x", "passwd"), "utf8")).toBe("from the image");
  });

  it("reads the Dockerfile from standard input with -f -", () => {
    const dir = project({ "f.txt": "from stdin build" });
    const dest = temp("out");
    const result = tsbuild(["build", "--root", temp("root"), "--progress", "quiet", "-f", "-", "-o", dest, dir], { input: "FROM scratch\nCOPY f.txt /\n" });
    expect(result.stderr).toBe("");
    expect(readFileSync(join(dest, "f.txt"), "utf8")).toBe("from stdin build");
  });

  it("uses named contexts: a directory as a base, an OCI layout as a base and as COPY --from", () => {
    const root = temp("root");
    const baseDir = project({ "etc/base-release": "base 1\n" });
    const layoutDir = join(temp("layout"), "layout");
    const first = project({ Dockerfile: "FROM base\nCOPY app.txt /app.txt\n", "app.txt": "app" });
    const built = tsbuild(["build", "--root", root, "--progress", "quiet", "--build-context", `base=${baseDir}`, "-t", "base:1", "-o", `type=oci-layout,dest=${layoutDir}`, first]);
    expect(built.stderr).toBe("");
    expect(built.code).toBe(0);

    const second = project({ Dockerfile: "FROM img\nCOPY --from=img /app.txt /copy.txt\n" });
    const dest = temp("out");
    const result = tsbuild(["build", "--root", root, "--progress", "quiet", "--build-context", `img=oci-layout://${layoutDir}:1`, "-o", dest, second]);
    expect(result.stderr).toBe("");
    expect(readFileSync(join(dest, "etc", "base-release"), "utf8")).toBe("base 1\n");
    expect(readFileSync(join(dest, "copy.txt"), "utf8")).toBe("app");
  });

  it("explains an image it cannot pull, at its FROM line", () => {
    // A closed port on loopback: the pull fails without any traffic leaving the machine.
    const dir = project({ Dockerfile: "FROM 127.0.0.1:1/debian:12\n" });
    const result = tsbuild(["build", "--root", temp("root"), dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Dockerfile:1:1: cannot pull 127.0.0.1:1/debian:12");
    expect(result.stderr).toMatch(/connection was refused/);
    expect(result.stderr).toMatch(/hint: check that the registry is up/);
  });

  it("du shows the cache and prune --all empties it", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: "FROM scratch\nCOPY a /a\n", a: "x".repeat(10_000) });
    expect(tsbuild(["build", "--root", root, "--progress", "quiet", dir]).code).toBe(0);
    const before = tsbuild(["du", "--root", root]);
    expect(before.code).toBe(0);
    expect(before.stdout).toMatch(/layers\s+1\s+9\.8 KiB/);
    const pruned = tsbuild(["prune", "--all", "--root", root]);
    expect(pruned.stdout).toMatch(/removed 1 cache records and 1 layers/);
    expect(tsbuild(["du", "--root", root]).stdout).toMatch(/layers\s+0/);
    expect(tsbuild(["prune", "--root", root]).stderr).toContain("say what to remove");
  });

  it("stops on Ctrl-C with exit 130 and leaves a store the next build can use", async () => {
    const root = temp("root");
    const files: Record<string, string> = { Dockerfile: "FROM scratch\nCOPY big/ /big/\n" };
    for (let i = 0; i < 2000; i++) files[`big/f${i}`] = "y".repeat(5_000);
    const dir = project(files);
    const child = spawn(process.execPath, [bin, "build", "--root", root, "--progress", "plain", dir], { stdio: ["ignore", "ignore", "pipe"] });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (stderr.includes("COPY big/") || child.exitCode !== null) {
          clearInterval(poll);
          resolve();
        }
      }, 5);
    });
    child.kill("SIGINT");
    const code = await exited;
    // The copy may finish before the signal lands; either way the store must stay consistent.
    expect([0, 130]).toContain(code);
    if (code === 130) expect(stderr).toContain("build cancelled");
    const dest = temp("out");
    expect(tsbuild(["build", "--root", root, "--progress", "quiet", "-o", dest, dir]).code).toBe(0);
    expect(readdirSync(join(dest, "big"))).toHaveLength(2000);
  });
});
