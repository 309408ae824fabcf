import { spawnSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  runSandbox,
  runWithOciRuntime,
  startSandbox,
  type SandboxResult,
  type SandboxSpec,
} from "../../src/runtime/index.ts";
import { Collector, isRoot, makeRootfs, requireHelper, requirePackages, shellSpec } from "./helpers.ts";

/*
 * The same specs run by our helper and by runc (Debian's package) through
 * an OCI bundle: what a process can observe about its sandbox must agree.
 */

let rootfs: string;

type Runner = "tsbuild" | "runc";

async function runWith(runner: Runner, spec: SandboxSpec): Promise<SandboxResult & { out: string; err: string }> {
  const out = new Collector();
  const err = new Collector();
  const r = runner === "tsbuild"
    ? await runSandbox(spec, { stdout: out, stderr: err })
    : await runWithOciRuntime("runc", spec, { stdout: out, stderr: err });
  return { ...r, out: out.text, err: err.text };
}

async function both(spec: SandboxSpec): Promise<Record<Runner, SandboxResult & { out: string; err: string }>> {
  return { tsbuild: await runWith("tsbuild", spec), runc: await runWith("runc", spec) };
}

const hostNamespaces = (): Record<string, string> =>
  Object.fromEntries(["pid", "mnt", "uts", "ipc", "net", "cgroup"].map((n) => [n, readlinkSync(`/proc/self/ns/${n}`)]));

describe.skipIf(!isRoot)("the native sandbox compared with runc", () => {
  beforeAll(() => {
    requireHelper();
    requirePackages(["runc"], () => spawnSync("runc", ["--version"]).status === 0);
    rootfs = makeRootfs();
  }, 120_000);

  it("capabilities, no_new_privs and seccomp mode agree (root, a user, no_new_privs)", async () => {
    const script = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status";
    for (const proc of [{}, { uid: 1000, gid: 1000 }, { noNewPrivileges: true }, { capAdd: ["SYS_PTRACE"], capDrop: ["CHOWN"] }]) {
      const r = await both(shellSpec(rootfs, script, {}, proc));
      expect(r.tsbuild.out).not.toBe("");
      expect(r.tsbuild.out).toBe(r.runc.out);
    }
  });

  it("user, groups, working directory, hostname and umask agree", async () => {
    const r = await both(
      shellSpec(rootfs, "id; id -G; pwd; hostname; umask; echo $HOME", { hostname: "cmp-host" }, {
        uid: 1000,
        gid: 1000,
        additionalGids: [2000],
        cwd: "/home/tester",
        env: ["HOME=/home/tester"],
      }),
    );
    expect(r.tsbuild.out).toBe("uid=1000(tester) gid=1000(tester) groups=2000(extra)\n1000 2000\n/home/tester\ncmp-host\n0022\n/home/tester\n");
    expect(r.tsbuild.out).toBe(r.runc.out);
  });

  it("the same namespaces are new, PID 1 is the command, only lo exists", async () => {
    const host = hostNamespaces();
    const script = [
      "for n in pid mnt uts ipc net cgroup; do echo $n $(readlink /proc/self/ns/$n); done",
      "echo pid1=$$",
      "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '",
      "cat /proc/self/cgroup | grep -c tsbuild || true",
    ].join("; ");
    const r = await both(shellSpec(rootfs, script));
    const summarize = (out: string): string[] =>
      out.split("\n").map((line) => {
        const [name, id] = line.split(" ");
        if (name && id && host[name] !== undefined) return `${name}:${id === host[name] ? "host" : "new"}`;
        return line;
      });
    expect(summarize(r.tsbuild.out)).toEqual(["pid:new", "mnt:new", "uts:new", "ipc:new", "net:new", "cgroup:new", "pid1=1", "lo", "0", ""]);
    expect(summarize(r.tsbuild.out)).toEqual(summarize(r.runc.out));
  });

  it("the mount tables agree (mount points, file system types, read-only flags)", async () => {
    const script = "awk '{ split($6, o, \",\"); print $5, o[1], $(NF-2) }' /proc/self/mountinfo | sort";
    const spec = shellSpec(rootfs, script, {
      etc: { hosts: "127.0.0.1 localhost\n", resolvConf: "nameserver 192.0.2.1\n" },
      mounts: [{ type: "tmpfs", destination: "/scratch", sizeBytes: 1 << 20 }],
    });
    const r = await both(spec);
    // runc creates device nodes with mknod where we bind the host's (runc does the same in user namespaces);
    // a masked file is a bind of /dev/null: the host's for us, runc's own node on the new /dev (tmpfs).
    const normalize = (out: string): string[] =>
      out
        .trim()
        .split("\n")
        .filter((l) => !/^\/dev\/(null|zero|full|random|urandom|tty) /.test(l))
        .map((l) => l.replace(/^(\/proc\/(keys|timer_list|kcore|latency_stats|timer_stats|sched_debug) rw) (devtmpfs|tmpfs)$/, "$1 masked"));
    expect(normalize(r.tsbuild.out)).toEqual(normalize(r.runc.out));
    expect(normalize(r.tsbuild.out)).toEqual(
      expect.arrayContaining(["/ rw ext4", "/proc rw proc", "/sys ro sysfs", "/proc/sys ro proc", "/dev rw tmpfs", "/etc/hosts ro ext4", "/scratch rw tmpfs"]),
    );
  });

  it("seccomp denies and allows the same syscalls", async () => {
    const calls = "keyctl add_key request_key unshare unshare_net mount umount bpf userfaultfd perf_event_open clock_settime personality_bad personality_ok clone3 fork chroot";
    const r = await both(shellSpec(rootfs, `/probe ${calls}`));
    expect(r.tsbuild.out).toContain("keyctl=EPERM");
    expect(r.tsbuild.out).toBe(r.runc.out);
  });

  it("exit codes agree: success, failure, missing command, not executable", async () => {
    for (const script of ["true", "exit 3", "no-such-command"]) {
      const r = await both(shellSpec(rootfs, script));
      expect(r.tsbuild.exitCode).toBe(r.runc.exitCode);
    }
    const missing = await both({ ...shellSpec(rootfs, ""), process: { args: ["no-such-command"], env: [], uid: 0, gid: 0 } });
    expect([missing.tsbuild.exitCode, missing.runc.exitCode]).toEqual([127, 127]);
    expect(missing.runc.error).toContain('exec: "no-such-command": executable file not found in $PATH');
    expect(missing.tsbuild.error).toBe('exec "no-such-command": executable file not found in $PATH');
    const notExec = await both({ ...shellSpec(rootfs, ""), process: { args: ["/etc/passwd"], env: [], uid: 0, gid: 0 } });
    expect([notExec.tsbuild.exitCode, notExec.runc.exitCode]).toEqual([126, 126]);
  });

  it("a SIGTERM reaches the command's trap under both", async () => {
    const spec = shellSpec(rootfs, "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done");
    const ours = new Collector();
    const handle = startSandbox(spec, { stdout: ours });
    await ours.waitFor("ready");
    handle.kill("SIGTERM");
    const r1 = await handle.result;

    // runc run forwards the signals it receives to the container's PID 1
    const theirs = new Collector();
    const controller = runWithOciRuntime("runc", spec, { stdout: theirs });
    await theirs.waitFor("ready");
    const runcPid = spawnSync("sh", ["-c", "pgrep -f '^runc --root .* run --bundle' | head -1"], { encoding: "utf8" }).stdout.trim();
    expect(runcPid).toMatch(/^\d+$/);
    process.kill(Number(runcPid), "SIGTERM");
    const r2 = await controller;

    expect(ours.text).toBe("ready\ngot TERM\n");
    expect(theirs.text).toBe(ours.text);
    expect([r1.exitCode, r2.exitCode]).toEqual([42, 42]);
  });

  it("measures runc's start-to-exit for `true` next to ours", async () => {
    const spec: SandboxSpec = { ...shellSpec(rootfs, ""), process: { args: ["/bin/true"], env: [], uid: 0, gid: 0 } };
    const time = async (fn: () => Promise<unknown>): Promise<number> => {
      const all: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        await fn();
        all.push(performance.now() - t0);
      }
      all.sort((a, b) => a - b);
      return all[5] ?? 0;
    };
    const ours = await time(() => runSandbox(spec));
    const runc = await time(() => runWithOciRuntime("runc", spec));
    console.log(`[measure] /bin/true start-to-exit, median of 10: tsbuild-sandbox ${ours.toFixed(1)} ms, runc ${runc.toFixed(1)} ms`);
    expect(ours).toBeGreaterThan(0);
  });
});
