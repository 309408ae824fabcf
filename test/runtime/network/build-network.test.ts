/**
 * The default network of RUN steps through the built CLI: a namespace of its
 * own for every step (from the pool), and nothing left behind however the
 * build ends. Needs `npm run build`.
 */
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { isRoot, requireHelper } from "../helpers.ts";
import { exited, leftovers, requireNetworkTools } from "./helpers.ts";

const repo = join(import.meta.dirname, "..", "..", "..");
const bin = join(repo, "bin", "tsbuild.js");
const busybox = "/bin/busybox";

function temp(label: string): string {
  return mkdtempSync(join(tmpdir(), `tsbuild-${label}-`));
}

/** A FROM scratch context with a static busybox and these shell commands as RUN steps. */
function project(steps: string[]): string {
  const dir = temp("netctx");
  copyFileSync(busybox, join(dir, "busybox"));
  const runs = steps.map((script) => `RUN ["/bin/busybox", "sh", "-c", ${JSON.stringify(`export PATH=/bin; ${script}`)}]`);
  writeFileSync(join(dir, "Dockerfile"), ["FROM scratch", "COPY busybox /bin/busybox", 'RUN ["/bin/busybox", "--install", "-s", "/bin"]', ...runs, ""].join("\n"));
  return dir;
}

/** Attachments of the build process `pid` (their ids start with run-<pid>-) left in the state root. */
function leftBy(root: string, pid: number | undefined): string[] {
  return leftovers({ stateDir: root, prefix: `run-${pid}-` });
}

function isStaticBusybox(): boolean {
  return existsSync(busybox) && !spawnSync("file", ["-L", busybox], { encoding: "utf8" }).stdout.includes("dynamically");
}

describe.skipIf(!isRoot)("RUN steps on the default network, through the CLI", () => {
  beforeAll(() => {
    requireHelper();
    requireNetworkTools();
    if (!existsSync(join(repo, "dist", "tsbuild.js"))) throw new Error("the CLI is not built: run `npm run build` first");
    if (!isStaticBusybox()) throw new Error(`${busybox} must be Debian's static busybox (apt-get install busybox-static)`);
  }, 180_000);

  it("gives every step a namespace of its own, and the build leaves none behind", () => {
    const root = temp("netroot");
    const dest = temp("netout");
    const steps = [1, 2, 3, 4].map((n) => `readlink /proc/self/ns/net > /ns${n}; ip -4 -o addr show dev eth0 | awk '{print $4}' > /ip${n}; ls /sys/class/net > /links${n}`);
    const result = spawnSync(process.execPath, [bin, "build", "--root", root, "--progress", "plain", "-o", `type=local,dest=${dest}`, project(steps)], { encoding: "utf8" });
    expect(result.stderr).toContain("DONE");
    expect(result.status).toBe(0);
    const read = (name: string) => readFileSync(join(dest, name), "utf8").trim();
    const namespaces = [1, 2, 3, 4].map((n) => read(`ns${n}`));
    const addresses = [1, 2, 3, 4].map((n) => read(`ip${n}`));
    for (const ns of namespaces) expect(ns).toMatch(/^net:\[\d+\]$/);
    for (const address of addresses) expect(address).toMatch(/^\d+\.\d+\.\d+\.\d+\/\d+$/);
    for (const n of [1, 2, 3, 4]) expect(read(`links${n}`).split("\n").sort()).toEqual(["eth0", "lo"]);
    expect(new Set(namespaces).size).toBe(4);
    expect(new Set(addresses).size).toBe(4);
    expect(leftBy(root, result.pid)).toEqual([]);
  }, 60_000);

  it("leaves none behind when a step fails", () => {
    const root = temp("netroot");
    const result = spawnSync(process.execPath, [bin, "build", "--root", root, "--progress", "plain", project(["true", "exit 3", "true"])], { encoding: "utf8" });
    expect(result.stderr).toContain("exit code 3");
    expect(result.status).toBe(1);
    expect(leftBy(root, result.pid)).toEqual([]);
  }, 60_000);

  it("leaves none behind when the build is interrupted (Ctrl-C)", async () => {
    const root = temp("netroot");
    // a process group of its own, which gets the SIGINT as a terminal's foreground group gets Ctrl-C
    const child = spawn(process.execPath, [bin, "build", "--root", root, "--progress", "plain", project(["true", "echo started; sleep 30"])], {
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
    });
    let output = "";
    await new Promise<void>((resolve) => child.stderr.on("data", (chunk: Buffer) => /#\d+ started\n/.test((output += chunk.toString())) && resolve()));
    // the step's namespace and the one attached ahead
    expect(leftBy(root, child.pid).filter((what) => what.startsWith("record")).length).toBeGreaterThanOrEqual(1);
    process.kill(-(child.pid as number), "SIGINT");
    expect(await exited(child)).toBe(130);
    expect(output).toContain("build cancelled");
    expect(leftBy(root, child.pid)).toEqual([]);
  }, 60_000);

  it("leaves what a build killed with SIGKILL held to the next build, which releases it", async () => {
    const root = temp("netroot");
    const child = spawn(process.execPath, [bin, "build", "--root", root, "--progress", "plain", project(["true", "echo started; sleep 30"])], { stdio: ["ignore", "ignore", "pipe"] });
    let output = "";
    await new Promise<void>((resolve) => child.stderr.on("data", (chunk: Buffer) => /#\d+ started\n/.test((output += chunk.toString())) && resolve()));
    child.kill("SIGKILL");
    await exited(child);
    expect(leftBy(root, child.pid)).not.toEqual([]);
    // (a step of its own: the killed build recorded the first two in the cache)
    const next = spawnSync(process.execPath, [bin, "build", "--root", root, "--progress", "plain", project(["echo next"])], { encoding: "utf8" });
    expect(next.status).toBe(0);
    expect(leftBy(root, child.pid)).toEqual([]);
    expect(leftBy(root, next.pid)).toEqual([]);
  }, 60_000);
});
