import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll } from "vitest";
import type { SandboxSpec } from "../../src/runtime/index.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const made: string[] = [];

export const isRoot = process.getuid?.() === 0;

/** A fresh temporary directory, removed after the file's tests. */
export function tempDir(prefix = "tsbuild-runtime-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function run(command: string, args: string[], env?: NodeJS.ProcessEnv): { status: number | null; out: string } {
  const r = spawnSync(command, args, { encoding: "utf8", env: env ?? process.env });
  return { status: r.error ? -1 : r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}

/** Installs Debian packages with apt-get when `check` says they are missing; fails naming them otherwise. */
export function requirePackages(packages: string[], check: () => boolean): void {
  if (check()) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = run("apt-get", ["update", "-qq"], env);
  const install = run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], env);
  if (!check()) {
    throw new Error(
      `the runtime tests need the Debian package(s) ${packages.join(", ")}; apt-get could not install them ` +
        `(${(install.out || update.out).trim().slice(-400)}): run apt-get install -y ${packages.join(" ")}`,
    );
  }
}

/** Compiles native/ when the helper is missing or older than its source. */
export function requireHelper(): string {
  const helper = join(repo, "native", "build", "tsbuild-sandbox");
  if (!existsSync(helper)) {
    requirePackages(["gcc", "libc6-dev", "libseccomp-dev", "make"], () => existsSync("/usr/include/seccomp.h") && run("gcc", ["--version"]).status === 0);
    const r = run("make", ["-C", join(repo, "native")]);
    if (r.status !== 0) throw new Error(`make -C native failed:\n${r.out}`);
  }
  return helper;
}

const PROBE_SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long r) {
  if (r < 0) printf("%s=%s\n", name, strerrorname_np(errno));
  else printf("%s=OK\n", name);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *p = argv[i];
    long r = 0;
    errno = 0;
    if (!strcmp(p, "keyctl")) r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
    else if (!strcmp(p, "add_key")) r = syscall(SYS_add_key, "user", "tsbuild-probe", "x", 1, -3);
    else if (!strcmp(p, "request_key")) r = syscall(SYS_request_key, "user", "tsbuild-probe", NULL, -3);
    else if (!strcmp(p, "unshare")) r = unshare(CLONE_NEWNS);
    else if (!strcmp(p, "unshare_net")) r = unshare(CLONE_NEWNET);
    else if (!strcmp(p, "mount")) r = mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
    else if (!strcmp(p, "umount")) r = umount2("/proc", MNT_DETACH);
    else if (!strcmp(p, "bpf")) r = syscall(SYS_bpf, 0, NULL, 0);
    else if (!strcmp(p, "userfaultfd")) r = syscall(SYS_userfaultfd, 0);
    else if (!strcmp(p, "perf_event_open")) r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    else if (!strcmp(p, "clock_settime")) { struct timespec ts = {0, 0}; r = syscall(SYS_clock_settime, 0, &ts); }
    else if (!strcmp(p, "personality_ok")) r = syscall(SYS_personality, 0xffffffff);
    else if (!strcmp(p, "personality_bad")) r = syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */);
    else if (!strcmp(p, "clone3")) r = syscall(SYS_clone3, NULL, 0);
    else if (!strcmp(p, "fork")) {
      pid_t pid = fork();
      if (pid == 0) _exit(0);
      r = pid < 0 ? -1 : waitpid(pid, NULL, 0);
    } else if (!strcmp(p, "chroot")) r = chroot("/");
    else { printf("%s=UNKNOWN\n", p); continue; }
    report(p, r);
  }
  return 0;
}
`;

let probeBinary: string | undefined;

/** A static binary probing syscalls (busybox has no keyctl): prints name=OK or name=EPERM... */
export function buildProbe(): string {
  if (probeBinary) return probeBinary;
  requirePackages(["gcc", "libc6-dev"], () => existsSync("/usr/lib/x86_64-linux-gnu/libc.a") || existsSync("/usr/lib/aarch64-linux-gnu/libc.a") || run("gcc", ["--version"]).status === 0);
  const dir = tempDir("tsbuild-probe-");
  writeFileSync(join(dir, "probe.c"), PROBE_SOURCE);
  const r = run("gcc", ["-static", "-O1", "-o", join(dir, "probe"), join(dir, "probe.c")]);
  if (r.status !== 0) throw new Error(`cannot compile the syscall probe (gcc -static, libc6-dev):\n${r.out}`);
  probeBinary = join(dir, "probe");
  return probeBinary;
}

function busyboxPath(): string | undefined {
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) {
    if (!existsSync(p)) continue;
    // a static busybox: runs in an empty root filesystem
    const file = run("sh", ["-c", `ldd ${p} 2>&1`]).out;
    if (/not a dynamic executable|statically linked/.test(file)) return p;
  }
  return undefined;
}

/**
 * A minimal root filesystem: Debian's static busybox with its applets as
 * symlinks, /etc/passwd and /etc/group, and the syscall probe at /probe.
 */
export function makeRootfs(): string {
  requirePackages(["busybox-static"], () => busyboxPath() !== undefined);
  const busybox = busyboxPath() as string;
  const root = tempDir("tsbuild-rootfs-");
  chmodSync(root, 0o755);
  mkdirSync(join(root, "bin"), { recursive: true });
  mkdirSync(join(root, "etc"));
  mkdirSync(join(root, "tmp"), { mode: 0o1777 });
  chmodSync(join(root, "tmp"), 0o1777);
  mkdirSync(join(root, "home", "tester"), { recursive: true });
  copyFileSync(busybox, join(root, "bin", "busybox"));
  chmodSync(join(root, "bin", "busybox"), 0o755);
  const applets = run(busybox, ["--list"]).out.split("\n").filter((a) => a && a !== "busybox");
  for (const applet of applets) symlinkSync("busybox", join(root, "bin", applet));
  writeFileSync(
    join(root, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:Tester:/home/tester:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
  );
  writeFileSync(join(root, "etc", "group"), "root:x:0:\ntester:x:1000:\nextra:x:2000:tester\nmore:x:2001:root,tester\nnogroup:x:65534:\n");
  copyFileSync(buildProbe(), join(root, "probe"));
  chmodSync(join(root, "probe"), 0o755);
  return root;
}

/** A writable stream that keeps what is written. */
export class Collector extends Writable {
  private chunks: Buffer[] = [];
  private waiters: Array<{ text: string; resolve: () => void }> = [];

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.chunks.push(chunk);
    if (this.waiters.length === 0) {
      cb();
      return;
    }
    const text = this.text;
    this.waiters = this.waiters.filter((w) => {
      if (!text.includes(w.text)) return true;
      w.resolve();
      return false;
    });
    cb();
  }

  get text(): string {
    return this.bytes.toString("utf8");
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Resolves once `text` has been written. */
  waitFor(text: string, timeoutMs = 10_000): Promise<void> {
    if (this.text.includes(text)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${JSON.stringify(text)}; got ${JSON.stringify(this.text)}`)), timeoutMs);
      this.waiters.push({
        text,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
}

/** A spec running `script` with busybox sh as root, network none. */
export function shellSpec(rootfs: string, script: string, overrides: Partial<SandboxSpec> = {}, process: Partial<SandboxSpec["process"]> = {}): SandboxSpec {
  return {
    process: { args: ["/bin/sh", "-c", script], env: ["HOME=/root"], cwd: "/", uid: 0, gid: 0, ...process },
    rootfs,
    hostname: "tsbuild-test",
    network: "none",
    security: "sandbox",
    ...overrides,
  };
}

/** Host PIDs whose command line contains `needle`, with their argv[0]. */
export function findProcesses(needle: string): Array<{ pid: number; argv0: string }> {
  const out: Array<{ pid: number; argv0: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv.some((a) => a.includes(needle))) out.push({ pid: Number(entry), argv0: argv[0] ?? "" });
    } catch {
      // gone
    }
  }
  return out;
}

export async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}
