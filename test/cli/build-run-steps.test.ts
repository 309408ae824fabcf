import { execFileSync, spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { project, repo, requireBuiltCli, temp, tsbuild, busyboxLayout, requireBusyboxImage } from "./helpers.ts";

const busybox = busyboxLayout;
const base = `busybox=oci-layout://${busybox}:latest`;

beforeAll(() => {
  requireBuiltCli();
  if (!existsSync(join(repo, "native", "build", "tsbuild-sandbox"))) {
    throw new Error("the sandbox helper is not built: run make -C native (scripts/setup.sh does)");
  }
  requireBusyboxImage();
});

function build(dir: string, root: string, extra: string[] = []) {
  return tsbuild(["build", "--root", root, "--progress", "plain", "--build-context", base, ...extra, dir]);
}

describe("RUN steps", () => {
  it("change the filesystem, deletions included, with ENV, ARG, USER and WORKDIR in effect", () => {
    const dir = project({
      Dockerfile: [
        "FROM busybox",
        "ARG GREETING=hi",
        "ENV TARGET=/srv",
        "WORKDIR /srv/app",
        'RUN echo "$GREETING from $(pwd)" > note && rm -rf /home/app',
        "USER app",
        "RUN id -u > /tmp/uid && echo $TARGET > /tmp/target",
        "",
      ].join("\n"),
    });
    const dest = temp("out");
    const result = build(dir, temp("root"), ["-o", dest]);
    expect(result.stderr).toContain("DONE");
    expect(result.code).toBe(0);
    expect(readFileSync(join(dest, "srv", "app", "note"), "utf8")).toBe("hi from /srv/app\n");
    expect(existsSync(join(dest, "home", "app"))).toBe(false);
    expect(readFileSync(join(dest, "tmp", "uid"), "utf8")).toBe("1000\n");
    expect(readFileSync(join(dest, "tmp", "target"), "utf8")).toBe("/srv\n");
  });

  it("fail the build with the step, the exit code, the last output lines and the log path; no layer is cached", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: "FROM busybox\nRUN echo first line; echo the last words >&2; exit 3\n" });
    const result = build(dir, root);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/error: \[stage-0 2\/2\] RUN echo first line.*Dockerfile:2\): the command .* failed: exit code 3/);
    expect(result.stderr).toContain("the last words");
    const logPath = /full log: (\S+)/.exec(result.stderr)?.[1] ?? "";
    expect(readFileSync(logPath, "utf8")).toContain("first line");
    const records = readdirSync(join(root, "cache"), { recursive: true }).filter((name) => String(name).endsWith(".json"));
    expect(records).toHaveLength(0);
  });

  it("keep cache mounts between builds and out of the layer", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: "FROM busybox\nARG N\nRUN --mount=type=cache,target=/cache echo run$N >> /cache/log && cat /cache/log > /seen\n" });
    expect(build(dir, root, ["--build-arg", "N=1"]).code).toBe(0);
    const dest = temp("out");
    expect(build(dir, root, ["--build-arg", "N=2", "-o", dest]).code).toBe(0);
    expect(readFileSync(join(dest, "seen"), "utf8")).toBe("run1\nrun2\n");
    expect(readdirSync(join(dest, "cache"))).toEqual([]);
  });

  it("expose secrets to the step only: never in the layer, the state root or the history", () => {
    const root = temp("root");
    const secretFile = join(temp("secret"), "token");
    writeFileSync(secretFile, "s3cr3t-value-4711");
    const dir = project({ Dockerfile: "FROM busybox\nRUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /length\n" });
    const layout = join(temp("layout"), "image");
    const result = build(dir, root, ["--secret", `id=token,src=${secretFile}`, "-o", `type=oci-layout,dest=${layout}`]);
    expect(result.stderr).not.toContain("s3cr3t");
    expect(result.code).toBe(0);
    const grep = (path: string) => spawnSync("grep", ["-r", "-a", "-l", "s3cr3t-value-4711", path]).status;
    expect(grep(root)).toBe(1);
    const extracted = temp("extracted");
    for (const blob of readdirSync(join(layout, "blobs", "sha256"))) {
      const path = join(layout, "blobs", "sha256", blob);
      const isGzip = readFileSync(path).subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]));
      if (isGzip) execFileSync("tar", ["-xzf", path, "-C", extracted]);
    }
    expect(grep(layout)).toBe(1);
    expect(grep(extracted)).toBe(1);
    expect(readFileSync(join(extracted, "length"), "utf8").trim()).toBe("17");
  });

  it("bind the context and other stages, mount tmpfs, and run heredoc scripts", () => {
    const dir = project({
      Dockerfile: [
        "FROM busybox AS tools",
        "RUN echo tool > /tool.txt",
        "FROM busybox",
        "RUN --mount=type=bind,target=/src --mount=type=bind,from=tools,source=/tool.txt,target=/t --mount=type=tmpfs,target=/scratch \\",
        "    cat /src/input.txt /t > /combined && touch /scratch/x && ls /scratch > /scratch-list",
        "RUN <<EOF",
        "#!/bin/sh",
        "echo from heredoc script > /heredoc",
        "EOF",
        "",
      ].join("\n"),
      "input.txt": "input\n",
    });
    const dest = temp("out");
    const result = build(dir, temp("root"), ["-o", dest]);
    expect(result.stderr).not.toContain("error");
    expect(readFileSync(join(dest, "combined"), "utf8")).toBe("input\ntool\n");
    expect(readFileSync(join(dest, "scratch-list"), "utf8")).toBe("x\n");
    expect(readdirSync(join(dest, "scratch"))).toEqual([]);
    expect(readFileSync(join(dest, "heredoc"), "utf8")).toBe("from heredoc script\n");
  });

  it("isolate the step: its own PID namespace, Docker's capabilities, no network with --network=none", () => {
    const dir = project({
      Dockerfile: [
        "FROM busybox",
        "RUN --network=none echo pid=$$ > /probe && grep CapEff /proc/self/status >> /probe && ls /sys/class/net >> /probe && hostname >> /probe && (touch /sys/x 2>/dev/null || echo sys-ro >> /probe)",
        "",
      ].join("\n"),
    });
    const dest = temp("out");
    expect(build(dir, temp("root"), ["-o", dest]).code).toBe(0);
    const probe = readFileSync(join(dest, "probe"), "utf8");
    expect(probe).toContain("pid=1\n");
    expect(probe).toContain("CapEff:\t00000000a80425fb");
    expect(probe).toMatch(/\nlo\n/);
    expect(probe).not.toMatch(/eth0/);
    expect(probe).toContain("buildkitsandbox");
    expect(probe).toContain("sys-ro");
  });

  it("start cache mounts empty with --no-cache unless --keep-cache-mounts, and prune them on request", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: "FROM busybox\nRUN --mount=type=cache,target=/c,sharing=locked echo x >> /c/log && wc -l < /c/log > /count\n" });
    const count = (extra: string[]) => {
      const dest = temp("out");
      const result = build(dir, root, [...extra, "-o", dest]);
      expect(result.code).toBe(0);
      return readFileSync(join(dest, "count"), "utf8").trim();
    };
    expect(count([])).toBe("1");
    expect(count(["--no-cache", "--keep-cache-mounts"])).toBe("2");
    expect(count(["--no-cache"])).toBe("1");
    const pruned = tsbuild(["prune", "--cache-mounts", "--root", root]);
    expect(pruned.stdout).toContain("removed 1 cache mounts");
    expect(count(["--no-cache", "--keep-cache-mounts"])).toBe("1");
  });

  it("need --allow for --security=insecure and --device", () => {
    const insecure = project({ Dockerfile: "FROM busybox\nRUN --security=insecure grep CapEff /proc/self/status > /caps\n" });
    const refused = build(insecure, temp("root"));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("--allow security.insecure");
    const dest = temp("out");
    expect(build(insecure, temp("root"), ["--allow", "security.insecure", "-o", dest]).code).toBe(0);
    expect(readFileSync(join(dest, "caps"), "utf8")).not.toContain("00000000a80425fb");

    const device = project({ Dockerfile: "FROM busybox\nRUN --device=/dev/fuse ls -l /dev/fuse > /fuse\n" });
    expect(build(device, temp("root")).stderr).toContain("--allow device");
  });

  it("run the same steps under runc with --runtime=runc", () => {
    const dir = project({ Dockerfile: "FROM busybox\nRUN echo pid=$$ > /p && grep CapEff /proc/self/status >> /p\n" });
    const dest = temp("out");
    const result = build(dir, temp("root"), ["--runtime", "runc", "-o", dest]);
    expect(result.stderr).not.toContain("error");
    expect(readFileSync(join(dest, "p"), "utf8")).toBe("pid=1\nCapEff:\t00000000a80425fb\n");
  });

  it("forward an SSH agent with --ssh, only to the steps that mount it", () => {
    const keyDir = temp("ssh");
    const key = join(keyDir, "id_ed25519");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
    const dir = project({
      Dockerfile: "FROM busybox\nRUN --mount=type=ssh ls -l $SSH_AUTH_SOCK > /agent && echo $SSH_AUTH_SOCK >> /agent\nRUN echo \"[$SSH_AUTH_SOCK]\" > /without\n",
    });
    const dest = temp("out");
    const result = build(dir, temp("root"), ["--ssh", `default=${key}`, "-o", dest]);
    expect(result.stderr).not.toContain("error");
    const agent = readFileSync(join(dest, "agent"), "utf8");
    expect(agent).toMatch(/^s/);
    expect(agent).toContain("/run/buildkit/ssh_agent.default");
    expect(readFileSync(join(dest, "without"), "utf8")).toBe("[]\n");
    expect(spawnSync("grep", ["-r", "-l", "PRIVATE KEY", dest]).status).toBe(1);
  });

  it("recover from a build killed during a RUN step: its mounts go, the next build succeeds", async () => {
    const root = temp("root");
    const dir = project({ Dockerfile: "FROM busybox\nRUN echo started && sleep 30\n" });
    const child = spawn(process.execPath, [join(repo, "bin", "tsbuild.js"), "build", "--root", root, "--progress", "plain", "--build-context", base, dir], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    // The step's own output line (not its name, which contains the word too).
    let output = "";
    await new Promise<void>((resolve) => child.stderr.on("data", (chunk: Buffer) => /#\d+ started\n/.test((output += chunk.toString())) && resolve()));
    child.kill("SIGKILL");
    await exited;
    const mountsUnder = () => readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => line.includes(`${root}/`)).length;
    expect(mountsUnder()).toBeGreaterThan(0);
    const fixed = project({ Dockerfile: "FROM busybox\nRUN echo done > /done\n" });
    const dest = temp("out");
    expect(build(fixed, root, ["-o", dest]).code).toBe(0);
    expect(readFileSync(join(dest, "done"), "utf8")).toBe("done\n");
    expect(mountsUnder()).toBe(0);
  });

  it("leave no stand-ins for /etc/hosts, resolv.conf or hostname in the layer", () => {
    const dir = project({ Dockerfile: "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n" });
    copyFileSync("/bin/busybox", join(dir, "busybox"));
    const dest = temp("out");
    expect(build(dir, temp("root"), ["-o", dest]).code).toBe(0);
    expect(readdirSync(join(dest, "etc"))).toEqual([]);
  });
});

