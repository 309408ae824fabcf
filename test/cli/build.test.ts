import { spawn } from "node:child_process";
import { lstatSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bin, example, project, requireBuiltCli, temp, tsbuild } from "./helpers.ts";
import { readOciLayout } from "../../src/exporter/index.ts";





/** Steps that ran and steps that were cached, from plain progress output. */
function steps(stderr: string): { ran: string[]; cached: string[] } {
  const names = new Map<string, string>();
  const ran: string[] = [];
  const cached: string[] = [];
  for (const line of stderr.split("\n")) {
    const match = /^#(\d+) (.*)$/.exec(line);
    if (!match) continue;
    const [, id = "", text = ""] = match;
    if (text === "CACHED") cached.push(names.get(id) ?? id);
    else if (text.startsWith("DONE")) ran.push(names.get(id) ?? id);
    else if (!names.has(id)) names.set(id, text);
  }
  return { ran, cached };
}

beforeAll(requireBuiltCli);

describe("tsbuild build", () => {
  it("builds the example into an OCI layout with the config Docker would write", async () => {
    const root = temp("root");
    const out = join(temp("out"), "layout");
    const result = tsbuild(["build", "--progress", "plain", "-t", "hello:1", "-o", `type=oci-layout,dest=${out}`, example], { root });
    expect(result.stderr).not.toContain("internal error");
    expect(result.code).toBe(0);
    const image = await readOciLayout(out, "hello:1");
    const config = image.config.config ?? {};
    expect(config.WorkingDir).toBe("/app");
    expect(config.Cmd).toEqual(["/app/hello"]);
    // The final stage starts from scratch again: only the default PATH, nothing of the build stage's ENV.
    expect(config.Env).toEqual(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    expect(Object.keys(config.ExposedPorts ?? {})).toEqual(["8080/tcp"]);
    expect(config.Healthcheck?.Test).toEqual(["CMD", "/app/healthcheck"]);
    expect(config.StopSignal).toBe("SIGTERM");
    const nonEmpty = (image.config.history ?? []).filter((entry) => !entry.empty_layer);
    expect(nonEmpty).toHaveLength(image.layers.length);
  });

  it("exports the filesystem with -o type=local", () => {
    const root = temp("root");
    const dest = temp("local");
    const result = tsbuild(["build", "--progress", "quiet", "-o", `type=local,dest=${dest}`, example], { root });
    expect(result.code).toBe(0);
    expect(readFileSync(join(dest, "app", "message.txt"), "utf8")).toBe("hello, world\n");
    expect(readFileSync(join(dest, "app", "version.txt"), "utf8")).toBe("version 1.0\n");
    expect(lstatSync(join(dest, "app", "message.txt")).mode & 0o777).toBe(0o644);
  });

  it("runs nothing on an unchanged rebuild, hits on an unrelated edit, misses from a changed file on", () => {
    const root = temp("root");
    const dir = project({
      Dockerfile: "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nCOPY . /all/\n",
      "a.txt": "a",
      "b.txt": "b",
      ".dockerignore": "unrelated.txt\n",
      "unrelated.txt": "x",
    });
    const build = () => tsbuild(["build", "--progress", "plain", dir], { root });
    const first = build();
    expect(first.code).toBe(0);
    expect(steps(first.stderr).ran).toHaveLength(3);
    expect(steps(build().stderr)).toMatchObject({ ran: [], cached: expect.arrayContaining([expect.stringContaining("COPY a.txt")]) });

    writeFileSync(join(dir, "unrelated.txt"), "changed");
    expect(steps(build().stderr).ran).toEqual([]);

    // Same size, same mtime, different content: caught by ctime/inode.
    const before = lstatSync(join(dir, "b.txt"));
    writeFileSync(join(dir, "b.txt"), "B");
    utimesSync(join(dir, "b.txt"), before.atime, before.mtime);
    const changed = steps(build().stderr);
    expect(changed.cached.some((name) => name.includes("COPY a.txt"))).toBe(true);
    expect(changed.ran.map((name) => name.replace(/^\[\S+ \d+\/\d+\] /, ""))).toEqual(["COPY b.txt /b.txt", "COPY . /all/"]);
  });

  it("keeps the store usable after kill -9 mid-build, and two builds can share a root", async () => {
    const root = temp("root");
    const files: Record<string, string> = { Dockerfile: "FROM scratch\nCOPY big/ /big/\nCOPY small.txt /\n", "small.txt": "s" };
    for (let i = 0; i < 400; i++) files[`big/file-${i}.bin`] = "x".repeat(20_000 + i);
    const dir = project(files);
    // Kill it as soon as the big copy starts (the progress line says so).
    const child = spawn(process.execPath, [bin, "build", "--progress", "plain", "--root", root, dir], { stdio: ["ignore", "ignore", "pipe"] });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    await new Promise<void>((resolve) => {
      child.stderr.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("COPY big/")) {
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.once("exit", () => resolve());
    });
    await exited;

    const run = () =>
      new Promise<number | null>((resolve) => {
        const build = spawn(process.execPath, [bin, "build", "--progress", "quiet", "--root", root, dir], { stdio: "ignore" });
        build.once("exit", resolve);
      });
    expect(await Promise.all([run(), run()])).toEqual([0, 0]);
    const out = temp("local");
    expect(tsbuild(["build", "--progress", "quiet", "-o", out, dir], { root }).code).toBe(0);
    expect(readFileSync(join(out, "big", "file-399.bin"), "utf8")).toHaveLength(20_399);
  });

  it("never reads outside the context", () => {
    const outside = project({ "secret.txt": "host secret" });
    // A source symlink is followed inside the context: /data.txt means <context>/data.txt.
    const dir = project({ Dockerfile: "FROM scratch\nCOPY link /copied\nCOPY tree/ /tree/\n", "data.txt": "context data", "tree/file": "f" });
    symlinkSync("/data.txt", join(dir, "link"));
    symlinkSync(join(outside, "secret.txt"), join(dir, "tree", "inner-link"));
    const dest = temp("local");
    const result = tsbuild(["build", "--progress", "quiet", "-o", dest, dir], { root: temp("root") });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(readFileSync(join(dest, "copied"), "utf8")).toBe("context data");
    // Symlinks inside a copied directory stay symlinks; the host file is never read.
    expect(readlinkSync(join(dest, "tree", "inner-link"))).toBe(join(outside, "secret.txt"));

    const absent = project({ Dockerfile: "FROM scratch\nCOPY link /x\n" });
    symlinkSync(join(outside, "secret.txt"), join(absent, "link"));
    const followed = tsbuild(["build", "--progress", "quiet", absent], { root: temp("root") });
    expect(followed.code).toBe(1);
    expect(followed.stderr).not.toContain("host secret");

    const escape = project({ Dockerfile: "FROM scratch\nCOPY ../secret.txt /x\n" });
    const escaped = tsbuild(["build", "--progress", "quiet", escape], { root: temp("root") });
    expect(escaped.code).toBe(1);
    expect(escaped.stderr).toMatch(/outside the build context|not found/);
  });

  it("reports a missing source with the step and line, exit 1, no stack trace", () => {
    const dir = project({ Dockerfile: "FROM scratch\nCOPY present.txt /\nCOPY missing.txt /\n", "present.txt": "p" });
    const result = tsbuild(["build", "--progress", "plain", dir], { root: temp("root") });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/error: \[stage-0 3\/3\] COPY missing\.txt \/ \(.*Dockerfile:3\): .*missing\.txt/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("prints a deterministic graph with --dry-run", () => {
    const json = tsbuild(["build", "--dry-run", example]);
    expect(json.code).toBe(0);
    expect(tsbuild(["build", "--dry-run", example]).stdout).toBe(json.stdout);
    const graph = JSON.parse(json.stdout);
    expect(graph.vertices.length).toBeGreaterThan(3);
    const dot = tsbuild(["build", "--dry-run", "--format", "dot", example]);
    expect(dot.stdout).toMatch(/^digraph build \{/);
  });

  it("rejects a bad output, target and context clearly", () => {
    expect(tsbuild(["build", "-o", "type=bogus,dest=x", example]).stderr).toContain('unknown output type "bogus"');
    expect(tsbuild(["build", "--target", "nope", example], { root: temp("root") }).stderr).toContain('target stage "nope" could not be found');
    expect(tsbuild(["build", "/nonexistent/dir"]).stderr).toContain("does not exist");
  });
});
