/**
 * External validator for the CLI: what `tsbuild build -o type=docker` and `tsbuild save`
 * write, Debian's dockerd loads and runs; what `docker save` writes, `tsbuild load` reads
 * and builds FROM.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDocker, type Docker } from "../exporter/dockerd.ts";
import { project, requireBuiltCli, temp, tsbuild, busyboxLayout, requireBusyboxImage } from "./helpers.ts";

const busybox = busyboxLayout;
const base = `busybox=oci-layout://${busybox}:latest`;
const TAGS = ["tsbuild-cli-test/app:1", "tsbuild-cli-test/saved:1", "tsbuild-cli-test/from-docker:1"];
let docker: Docker;

function ok(result: { code: number | null; stdout: string; stderr: string }) {
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr}`);
  return result;
}

beforeAll(async () => {
  requireBuiltCli();
  requireBusyboxImage();
  docker = await startDocker();
}, 120_000);

afterAll(async () => {
  for (const tag of TAGS) {
    try {
      docker?.run(["image", "rm", "--force", tag]);
    } catch {
      // not loaded: nothing to remove
    }
  }
  await docker?.stop();
});

describe("docker archives", () => {
  it("docker loads and runs what -o type=docker writes, with its config", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: 'FROM busybox\nRUN echo built by tsbuild > /msg\nENV GREETING=hi\nCMD ["sh", "-c", "cat /msg; echo $GREETING"]\n' });
    const archive = join(temp("out"), "app.tar");
    ok(tsbuild(["build", "--build-context", base, "-t", TAGS[0] as string, "-o", `type=docker,dest=${archive}`, dir], { root }));
    expect(docker.run(["load", "-i", archive])).toContain(`Loaded image: ${TAGS[0]}`);
    expect(docker.run(["run", "--rm", "--network", "none", TAGS[0] as string])).toBe("built by tsbuild\nhi\n");
    const [inspected] = JSON.parse(docker.run(["image", "inspect", TAGS[0] as string])) as [{ Config: { Env: string[] } }];
    expect(inspected.Config.Env).toContain("GREETING=hi");
  }, 120_000);

  it("tsbuild save → docker load keeps the image id; docker save → tsbuild load builds FROM it", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: "FROM busybox\nRUN echo saved > /saved\n" });
    ok(tsbuild(["build", "--build-context", base, "-t", TAGS[1] as string, dir], { root }));
    const id = (JSON.parse(ok(tsbuild(["inspect", TAGS[1] as string], { root })).stdout) as [{ Id: string }])[0].Id;
    const archive = join(temp("out"), "saved.tar");
    ok(tsbuild(["save", TAGS[1] as string, "-o", archive], { root }));
    docker.run(["load", "-i", archive]);
    expect(docker.run(["image", "inspect", "--format", "{{.Id}}", TAGS[1] as string]).trim()).toBe(id);
    expect(docker.run(["run", "--rm", "--network", "none", TAGS[1] as string, "cat", "/saved"])).toBe("saved\n");

    const fromDocker = join(temp("out"), "docker-saved.tar");
    docker.run(["tag", TAGS[1] as string, TAGS[2] as string]);
    docker.run(["save", "-o", fromDocker, TAGS[2] as string]);
    const other = temp("root");
    expect(ok(tsbuild(["load", "-i", fromDocker], { root: other })).stdout).toContain(`Loaded image: ${TAGS[2]}`);
    const out = temp("out");
    ok(tsbuild(["build", "-o", `type=local,dest=${out}`, project({ Dockerfile: `FROM ${TAGS[2]}\nRUN cat /saved > /copied\n` })], { root: other }));
    expect(existsSync(join(out, "copied"))).toBe(true);
  }, 120_000);
});
