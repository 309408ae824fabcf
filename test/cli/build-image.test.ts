import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readOciLayout } from "../../src/exporter/index.ts";

const repo = join(import.meta.dirname, "..", "..");
const bin = join(repo, "bin", "tsbuild.js");
const example = join(repo, "fixtures", "examples", "hello");

function temp(label: string): string {
  return mkdtempSync(join(tmpdir(), `tsbuild-${label}-`));
}

function build(args: string[]): void {
  const result = spawnSync(process.execPath, [bin, "build", "--root", temp("root"), "--progress", "quiet", ...args], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`tsbuild build failed (${result.status}):\n${result.stderr}`);
}

function requireTool(name: string, debianPackage: string): void {
  const found = spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
  if (!found) throw new Error(`${name} is needed by this test: install it with apt-get install -y ${debianPackage} (scripts/setup.sh does)`);
}

beforeAll(() => {
  if (!existsSync(join(repo, "dist", "tsbuild.js"))) throw new Error("the CLI is not built: run `npm run build` first");
});

describe("images tsbuild builds", () => {
  it("pass skopeo inspect and umoci unpack", () => {
    requireTool("skopeo", "skopeo");
    requireTool("umoci", "umoci");
    const layout = join(temp("layout"), "image");
    build(["-t", "hello:1", "-o", `type=oci-layout,dest=${layout}`, example]);

    const inspected = JSON.parse(execFileSync("skopeo", ["inspect", `oci:${layout}:1`], { encoding: "utf8" }));
    expect(inspected.Architecture).toBeTruthy();
    expect(inspected.Layers.length).toBeGreaterThan(0);
    const config = JSON.parse(execFileSync("skopeo", ["inspect", "--config", `oci:${layout}:1`], { encoding: "utf8" }));
    expect(config.config.Cmd).toEqual(["/app/hello"]);

    const bundle = join(temp("bundle"), "bundle");
    execFileSync("umoci", ["unpack", "--image", `${layout}:1`, bundle], { stdio: "pipe" });
    expect(readFileSync(join(bundle, "rootfs", "app", "message.txt"), "utf8")).toBe("hello, world\n");
    expect(readFileSync(join(bundle, "rootfs", "app", "version.txt"), "utf8")).toBe("version 1.0\n");
    const runtime = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8"));
    expect(runtime.process.cwd).toBe("/app");
  });

  it("carry every instruction's effect on config and filesystem", async () => {
    const context = temp("ctx");
    mkdirSync(join(context, "src", "lib"), { recursive: true });
    writeFileSync(join(context, "src", "main.txt"), "main");
    writeFileSync(join(context, "src", "lib", "util.txt"), "util");
    writeFileSync(join(context, "src", "notes.md"), "notes");
    writeFileSync(join(context, "tool.sh"), "#!/bin/sh\n", { mode: 0o644 });
    // Enough files that the copy goes through tar.
    mkdirSync(join(context, "many", "nested"), { recursive: true });
    for (let i = 0; i < 80; i++) writeFileSync(join(context, "many", i % 2 ? "nested" : "", `f${i}.${i % 10 === 0 ? "skip" : "txt"}`), `file ${i}`);
    symlinkSync("f2.txt", join(context, "many", "link"));
    writeFileSync(
      join(context, "Dockerfile"),
      [
        "FROM scratch AS files",
        "COPY <<EOF /etc/passwd",
        "root:x:0:0:root:/root:/bin/sh",
        "app:x:1000:1000::/home/app:/bin/sh",
        "EOF",
        "COPY <<EOF /etc/group",
        "root:x:0:",
        "staff:x:50:",
        "EOF",
        "FROM files",
        "ARG VERSION=2.1",
        "ENV APP=/srv/app PATH=/srv/app/bin:$PATH",
        "WORKDIR $APP",
        "COPY --chown=app:staff --exclude=*.md src/ ./",
        "COPY --chmod=u+x,go+rx tool.sh bin/",
        "COPY --chmod=4755 --chown=app tool.sh /usr/local/bin/suid",
        "COPY --link src/main.txt /linked/",
        "COPY --chown=app:staff --chmod=640 --exclude=*.skip many/ /many/",
        "LABEL org.opencontainers.image.version=$VERSION maintainer=me",
        "USER app",
        "EXPOSE 8000-8001 9000/udp",
        "VOLUME /data",
        "STOPSIGNAL SIGQUIT",
        'HEALTHCHECK --interval=10s --timeout=2s --retries=4 CMD ["/srv/app/bin/tool.sh", "health"]',
        "ONBUILD COPY . /src",
        'SHELL ["/bin/bash", "-c"]',
        "ENTRYPOINT exec serve",
        "",
      ].join("\n"),
    );
    const layout = join(temp("layout"), "image");
    const rootfs = temp("rootfs");
    build(["-t", "all:1", "-o", `type=oci-layout,dest=${layout}`, "-o", `type=local,dest=${rootfs}`, context]);

    const image = await readOciLayout(layout, "all:1");
    expect(image.config.config).toMatchObject({
      Env: ["PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP=/srv/app"],
      WorkingDir: "/srv/app",
      User: "app",
      Labels: { "org.opencontainers.image.version": "2.1", maintainer: "me" },
      ExposedPorts: { "8000/tcp": {}, "8001/tcp": {}, "9000/udp": {} },
      Volumes: { "/data": {} },
      StopSignal: "SIGQUIT",
      Healthcheck: { Test: ["CMD", "/srv/app/bin/tool.sh", "health"], Interval: 10e9, Timeout: 2e9, Retries: 4 },
      OnBuild: ["COPY . /src"],
      Shell: ["/bin/bash", "-c"],
      Entrypoint: ["/bin/bash", "-c", "exec serve"],
    });
    expect(image.config.config?.Cmd ?? null).toBeNull();
    const history = image.config.history ?? [];
    expect(history.filter((entry) => !entry.empty_layer)).toHaveLength(image.layers.length);

    // A local export leaves files to the user who exports (as BuildKit's does); the layers keep the owners.
    const listing = image.layers.map((layer) => execFileSync("tar", ["--numeric-owner", "-tvzf", layer.path], { encoding: "utf8" })).join("");
    expect(listing).toMatch(/1000\/50 +\d+ \S+ \S+ srv\/app\/lib\/util\.txt/);
    expect(listing).toMatch(/-rw-r----- 1000\/50 +\d+ \S+ \S+ many\/nested\/f1\.txt/);
    expect(listing).toMatch(/l\S+ 1000\/50 .* many\/link -> f2\.txt/);
    expect(listing).not.toContain(".skip");
    expect(readFileSync(join(rootfs, "many", "f2.txt"), "utf8")).toBe("file 2");
    // setuid survives the copy and the chown (both clear it in the kernel unless set again).
    expect(listing).toMatch(/-rwsr-xr-x 1000\/1000 +\d+ \S+ \S+ usr\/local\/bin\/suid/);
    expect(existsSync(join(rootfs, "srv", "app", "notes.md"))).toBe(false);
    expect(lstatSync(join(rootfs, "srv", "app", "bin", "tool.sh")).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(rootfs, "linked", "main.txt"), "utf8")).toBe("main");
    expect(readFileSync(join(rootfs, "etc", "group"), "utf8")).toContain("staff:x:50:");
    expect(() => readlinkSync(join(rootfs, "srv"))).toThrow();
  });
});
