import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runSandbox, startSandbox, type SandboxResult, type SandboxSpec } from "../../src/runtime/index.ts";
import { Collector, findProcesses, isRoot, makeRootfs, requireHelper, shellSpec, tempDir, waitUntil } from "./helpers.ts";

let rootfs: string;

async function sh(script: string, overrides: Partial<SandboxSpec> = {}, proc: Partial<SandboxSpec["process"]> = {}): Promise<SandboxResult & { out: string; err: string }> {
  const out = new Collector();
  const err = new Collector();
  const result = await runSandbox(shellSpec(rootfs, script, overrides, proc), { stdout: out, stderr: err });
  return { ...result, out: out.text, err: err.text };
}

function statusField(text: string, field: string): string | undefined {
  return new RegExp(`^${field}:\\s*(\\S+)`, "m").exec(text)?.[1];
}

describe.skipIf(!isRoot)("the native sandbox (real kernel, as root)", () => {
  beforeAll(() => {
    requireHelper();
    rootfs = makeRootfs();
  }, 120_000);

  it("runs the command as PID 1 of a fresh PID namespace, seeing only its own processes", async () => {
    const r = await sh("echo pid=$$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '");
    expect(r.exitCode).toBe(0);
    expect(r.out).toContain("pid=1\n");
    const pids = r.out.split("\n")[1]?.trim().split(" ").map(Number) ?? [];
    // sh, the ls/grep/sort/tr pipeline: nothing of the host
    expect(pids[0]).toBe(1);
    expect(pids.every((p) => p < 20)).toBe(true);
  });

  it("sets the hostname in its own UTS namespace", async () => {
    const r = await sh("hostname; cat /proc/sys/kernel/hostname", { hostname: "step-42" });
    expect(r.out).toBe("step-42\nstep-42\n");
  });

  it("gives root Docker's default capabilities and a non-root user none", async () => {
    const root = await sh("cat /proc/self/status");
    expect(statusField(root.out, "CapEff")).toBe("00000000a80425fb");
    expect(statusField(root.out, "CapPrm")).toBe("00000000a80425fb");
    expect(statusField(root.out, "CapBnd")).toBe("00000000a80425fb");
    expect(statusField(root.out, "CapInh")).toBe("0000000000000000");
    expect(statusField(root.out, "NoNewPrivs")).toBe("0");
    expect(statusField(root.out, "Seccomp")).toBe("2");

    const user = await sh("cat /proc/self/status", {}, { uid: 1000, gid: 1000 });
    expect(statusField(user.out, "CapEff")).toBe("0000000000000000");
    expect(statusField(user.out, "CapPrm")).toBe("0000000000000000");
    expect(statusField(user.out, "CapBnd")).toBe("00000000a80425fb");
  });

  it("sets no_new_privs only when asked", async () => {
    const r = await sh("grep NoNewPrivs /proc/self/status", {}, { noNewPrivileges: true });
    expect(statusField(r.out, "NoNewPrivs")).toBe("1");
  });

  it("adds and drops capabilities on request", async () => {
    const r = await sh("grep CapEff /proc/self/status", {}, { capAdd: ["NET_ADMIN"], capDrop: ["CAP_MKNOD"] });
    // a80425fb + NET_ADMIN (bit 12) - MKNOD (bit 27)
    expect(statusField(r.out, "CapEff")).toBe("00000000a00435fb");
  });

  it("mounts a fresh /proc, a minimal /dev, a read-only /sys, and masks what Docker masks", async () => {
    const r = await sh(
      [
        "cat /proc/self/mountinfo > /tmp/mounts",
        "awk '{print $5, $6}' /tmp/mounts",
        "echo ---",
        "ls /dev | tr '\\n' ' '; echo",
        "echo ---",
        "wc -c < /proc/timer_list; wc -c < /proc/keys",
        "ls -A /proc/acpi 2>/dev/null | wc -l; ls -A /sys/firmware | wc -l",
        "test -e /proc/kcore && wc -c < /proc/kcore || echo no-kcore",
        "(echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-writable || echo sys-readonly",
        "touch /sys/tsbuild 2>/dev/null && echo sysfs-writable || echo sysfs-readonly",
        "echo hello > /dev/null && head -c 4 /dev/zero | wc -c && head -c 8 /dev/urandom | wc -c",
        "echo to-stdout > /dev/stdout",
      ].join("\n"),
    );
    expect(r.err).toBe("");
    const [mounts = "", dev = "", probes = ""] = r.out.split("---\n");
    const table = new Map(mounts.trim().split("\n").map((l) => l.split(" ") as [string, string]));
    expect(table.get("/")).toMatch(/^rw/);
    expect(table.get("/proc")).toMatch(/nosuid,nodev,noexec/);
    expect(table.get("/sys")).toMatch(/^ro,/);
    expect(table.get("/proc/sys")).toMatch(/^ro,/);
    expect(table.get("/dev")).toMatch(/nosuid/);
    expect(table.get("/dev/pts")).toBeDefined();
    expect(table.get("/dev/shm")).toMatch(/nodev/);
    expect(table.get("/dev/mqueue")).toBeDefined();
    expect(table.get("/proc/timer_list")).toBeDefined();
    expect(table.get("/sys/firmware")).toMatch(/^ro/);
    // nothing of the host's own mount tree
    for (const point of table.keys()) {
      expect(point).toMatch(/^\/(proc|dev|sys|etc|tmp)?(\/|$)/);
      expect(point).not.toContain(rootfs);
    }
    expect(dev.trim().split(" ").sort()).toEqual(
      ["fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"].sort(),
    );
    expect(probes.split("\n").slice(0, 8)).toEqual(["0", "0", "0", "0", "no-kcore", "sys-readonly", "sysfs-readonly", "4"]);
    expect(r.out).toContain("to-stdout");
  });

  it("runs in a network namespace with only lo (none), or the host's (host)", async () => {
    const none = await sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; echo ---; ip link show lo | head -1");
    const [ifaces, lo] = none.out.split("---\n");
    expect(ifaces).toBe("lo\n");
    expect(lo).toMatch(/lo: <LOOPBACK,UP/);
    const def = await sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '", { network: "default" });
    expect(def.out).toBe("lo\n");
    const host = await sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort", { network: "host" });
    const hostIfaces = readFileSync("/proc/net/dev", "utf8").split("\n").slice(2).map((l) => l.split(":")[0]?.trim()).filter(Boolean).sort();
    expect(host.out.trim().split("\n")).toEqual(hostIfaces);
  });

  it("blocks keyctl, add_key, mount, unshare and friends with seccomp (EPERM), clone3 with ENOSYS", async () => {
    const calls = ["keyctl", "add_key", "request_key", "unshare", "unshare_net", "mount", "umount", "bpf", "userfaultfd", "perf_event_open", "clock_settime", "personality_bad", "personality_ok", "clone3", "fork", "chroot"];
    const r = await sh(`/probe ${calls.join(" ")}`);
    expect(r.exitCode).toBe(0);
    // the same program compiled afresh (no cache) behaves the same
    const fresh = new Collector();
    await runSandbox(shellSpec(rootfs, `/probe ${calls.join(" ")}`), { stdout: fresh, seccompCacheDir: false });
    expect(fresh.text).toBe(r.out);
    const got = Object.fromEntries(r.out.trim().split("\n").map((l) => l.split("=") as [string, string]));
    expect(got).toEqual({
      keyctl: "EPERM",
      add_key: "EPERM",
      request_key: "EPERM",
      unshare: "EPERM",
      unshare_net: "EPERM",
      mount: "EPERM",
      umount: "EPERM",
      bpf: "EPERM",
      userfaultfd: "EPERM",
      perf_event_open: "EPERM",
      clock_settime: "EPERM",
      personality_bad: "EPERM",
      personality_ok: "OK",
      clone3: "ENOSYS",
      fork: "OK",
      chroot: "OK",
    });
  });

  it("--security=insecure: all capabilities, no seccomp, nothing masked", async () => {
    const r = await sh("grep -E '^(CapEff|Seccomp):' /proc/self/status; /probe keyctl unshare; wc -c < /proc/timer_list", { security: "insecure" });
    const hostBnd = statusField(readFileSync("/proc/self/status", "utf8"), "CapBnd");
    expect(statusField(r.out, "CapEff")).toBe(hostBnd);
    expect(statusField(r.out, "Seccomp")).toBe("0");
    expect(r.out).not.toContain("keyctl=EPERM");
    expect(r.out).toContain("unshare=OK");
    expect(r.out.trim().split("\n").at(-1)).not.toBe("0");
  });

  it("switches to the requested uid, gid and supplementary groups", async () => {
    const r = await sh("id; id -u; id -g; id -G; echo $HOME; touch /root-owned 2>&1 || true", {}, { uid: 1000, gid: 1000, additionalGids: [2000, 2001], env: ["HOME=/home/tester"] });
    expect(r.out.split("\n").slice(0, 4)).toEqual(["uid=1000(tester) gid=1000(tester) groups=2000(extra),2001(more)", "1000", "1000", "1000 2000 2001"]);
    expect(r.out).toContain("Permission denied");
  });

  it("creates a missing working directory owned by root and reports created mount points", async () => {
    // whatever the command's umask: the directory is 0755, as WORKDIR makes it
    const r = await sh("pwd; stat -c '%u:%g %a' .", {}, { cwd: "/srv/app/work", umask: 0o077 });
    expect(r.out).toBe("/srv/app/work\n0:0 755\n");
    expect(r.createdPaths).toContain("/srv/app/work");
    expect(statSync(join(rootfs, "srv/app/work")).isDirectory()).toBe(true);
  });

  it("bind-mounts /etc/hosts, /etc/resolv.conf and /etc/hostname from the given contents", async () => {
    const r = await sh("cat /etc/hosts /etc/resolv.conf /etc/hostname; echo x >> /etc/hosts 2>/dev/null || echo hosts-ro", {
      etc: { hosts: "127.0.0.1 localhost box\n", resolvConf: "nameserver 192.0.2.53\n", hostname: "box\n" },
    });
    expect(r.out).toBe("127.0.0.1 localhost box\nnameserver 192.0.2.53\nbox\nhosts-ro\n");
    // the files the sandbox had to create in the root filesystem for the binds are reported
    expect(r.createdPaths).toEqual(expect.arrayContaining(["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"]));
  });

  it("mounts extra binds (ro/rw) and tmpfs, and follows symlinks only inside the root", async () => {
    const host = tempDir("tsbuild-bind-");
    const { writeFileSync, symlinkSync, mkdirSync } = await import("node:fs");
    writeFileSync(join(host, "data"), "from-host\n");
    // a symlink in the image pointing at an absolute path must resolve inside the root
    mkdirSync(join(rootfs, "links"), { recursive: true });
    symlinkSync("/etc", join(rootfs, "links", "etc-link"));
    const r = await sh(
      "cat /in/data; echo x > /in/new 2>/dev/null || echo in-ro; echo y > /out/new && echo out-rw; df -k /scratch | tail -1 | awk '{print $2}'; ls /links/etc-link/mnt-here",
      {
        mounts: [
          { type: "bind", source: host, destination: "/in", readonly: true },
          { type: "bind", source: host, destination: "/out" },
          { type: "tmpfs", destination: "/scratch", sizeBytes: 4 * 1024 * 1024 },
          { type: "tmpfs", destination: "/links/etc-link/mnt-here" },
        ],
      },
    );
    expect(r.out.split("\n").slice(0, 4)).toEqual(["from-host", "in-ro", "out-rw", "4096"]);
    expect(readFileSync(join(host, "new"), "utf8")).toBe("y\n");
    expect(existsSync(join(rootfs, "etc", "mnt-here"))).toBe(true);
    expect(existsSync("/etc/mnt-here")).toBe(false);
  });

  it("returns the command's exit code, 127 for a missing command and 126 for a file that cannot run", async () => {
    expect((await sh("exit 3")).exitCode).toBe(3);
    expect((await sh("true")).exitCode).toBe(0);

    const err = new Collector();
    const missing = await runSandbox({ ...shellSpec(rootfs, ""), process: { args: ["no-such-command"], env: [], uid: 0, gid: 0 } }, { stderr: err });
    expect(missing.exitCode).toBe(127);
    expect(missing.error).toBe('exec "no-such-command": executable file not found in $PATH');
    expect(err.text).toBe('tsbuild-sandbox: exec "no-such-command": executable file not found in $PATH\n');

    const notExec = await runSandbox({ ...shellSpec(rootfs, ""), process: { args: ["/etc/passwd"], env: [], uid: 0, gid: 0 } });
    expect(notExec.exitCode).toBe(126);
    expect(notExec.error).toBe("exec /etc/passwd: Permission denied");

    const viaShell = await sh("no-such-command");
    expect(viaShell.exitCode).toBe(127);
  });

  it("says how to build the helper when it is missing", async () => {
    await expect(runSandbox(shellSpec(rootfs, "true"), { helper: "/nonexistent/tsbuild-sandbox" })).rejects.toThrow(
      "the sandbox helper /nonexistent/tsbuild-sandbox is not built: run make -C native (scripts/setup.sh does)",
    );
  });

  it("reports setup failures with exit code 125 and the reason", async () => {
    const err = new Collector();
    const r = await runSandbox(
      shellSpec(rootfs, "true", { mounts: [{ type: "bind", source: "/nonexistent/tsbuild", destination: "/x" }] }),
      { stderr: err },
    );
    expect(r.exitCode).toBe(125);
    expect(r.error).toBe("bind mount source /nonexistent/tsbuild: No such file or directory");
    expect(err.text).toBe("tsbuild-sandbox: bind mount source /nonexistent/tsbuild: No such file or directory\n");
  });

  it("reports 128+signal when the command is killed", async () => {
    // as PID 1 the command cannot be killed from inside: with an init it can
    const inited = await sh("kill -9 $$", {}, { init: true });
    expect(inited.exitCode).toBe(137);
    expect(inited.signal).toBe("SIGKILL");

    // PID 1 killed from the host
    const out = new Collector();
    const handle = startSandbox(shellSpec(rootfs, "echo ready; sleep 876543; :"), { stdout: out });
    await out.waitFor("ready");
    const sh1 = findProcesses("876543").find((p) => p.argv0 === "/bin/sh");
    expect(sh1).toBeDefined();
    process.kill(sh1!.pid, "SIGKILL");
    const r = await handle.result;
    expect(r.exitCode).toBe(137);
    expect(r.signal).toBe("SIGKILL");
  });

  for (const init of [false, true]) {
    it(`forwards SIGTERM to the command (${init ? "behind the minimal init" : "as PID 1"})`, async () => {
      const out = new Collector();
      const handle = startSandbox(
        shellSpec(rootfs, "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done", {}, { init }),
        { stdout: out },
      );
      await out.waitFor("ready");
      handle.kill("SIGTERM");
      const r = await handle.result;
      expect(out.text).toContain("got TERM");
      expect(r.exitCode).toBe(42);
    });
  }

  it("reaps zombies when it is the init", async () => {
    const r = await sh("(sleep 0.1 &); sleep 0.6; ps -o pid,stat,comm | awk 'NR>1 {print $2}'", {}, { init: true });
    expect(r.exitCode).toBe(0);
    expect(r.out).not.toMatch(/Z/);
    const pids = await sh("echo $$; ps -o pid,comm | awk 'NR>1 {print $1\":\"$2}' | head -1", {}, { init: true });
    // the command is PID 2 behind the init
    expect(pids.out.split("\n")[0]).toBe("2");
  });

  it("killing the helper kills every process of the step", async () => {
    const out = new Collector();
    const handle = startSandbox(shellSpec(rootfs, "sleep 987654 & sleep 987655 & echo started; wait"), { stdout: out });
    await out.waitFor("started");
    expect(await waitUntil(() => findProcesses("98765").filter((p) => p.argv0 === "sleep").length === 2)).toBe(true);
    handle.kill("SIGKILL");
    const r = await handle.result;
    expect(r.signal).toBe("SIGKILL");
    expect(await waitUntil(() => findProcesses("98765").length === 0)).toBe(true);
  });

  it("aborting through the AbortSignal kills the step and rejects", async () => {
    const out = new Collector();
    const controller = new AbortController();
    const promise = runSandbox(shellSpec(rootfs, "sleep 765432 & echo started; wait"), { stdout: out, signal: controller.signal });
    await out.waitFor("started");
    controller.abort();
    await expect(promise).rejects.toThrow();
    expect(await waitUntil(() => findProcesses("765432").length === 0)).toBe(true);
  });

  it("applies cgroup limits (memory, cpu, pids) in a per-run cgroup removed afterwards", async () => {
    const out = new Collector();
    const handle = startSandbox(
      shellSpec(rootfs, "echo ready; cat /proc/self/cgroup > /tmp/cg; sleep 654321; :", {
        cgroup: { memoryBytes: 64 * 1024 * 1024, pidsLimit: 32, cpus: 0.5 },
      }),
      { stdout: out },
    );
    await out.waitFor("ready");
    const proc = findProcesses("654321").find((p) => p.argv0 === "/bin/sh");
    expect(proc).toBeDefined();
    const lines = readFileSync(`/proc/${proc!.pid}/cgroup`, "utf8").trim().split("\n");
    const paths = new Map(lines.map((l) => { const [, ctrl = "", path = ""] = l.split(":"); return [ctrl, path]; }));
    const limits: Record<string, string> = {};
    const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified";
    const read = (file: string): string | undefined => (existsSync(file) ? readFileSync(file, "utf8").trim() : undefined);
    const dirs: string[] = [];
    for (const [ctrl, path] of paths) {
      const base = ctrl === "" ? v2 : `/sys/fs/cgroup/${ctrl.replace(/^name=/, "")}`;
      if (!path.startsWith("/tsbuild/")) continue;
      dirs.push(join(base, path));
      limits["memory"] ??= read(join(base, path, "memory.max")) ?? read(join(base, path, "memory.limit_in_bytes")) ?? "";
      limits["pids"] ??= read(join(base, path, "pids.max")) ?? "";
      limits["cpu"] ??= read(join(base, path, "cpu.max")) ?? read(join(base, path, "cpu.cfs_quota_us")) ?? "";
      if (!limits["memory"]) delete limits["memory"];
      if (!limits["pids"]) delete limits["pids"];
      if (!limits["cpu"]) delete limits["cpu"];
    }
    expect(dirs.length).toBeGreaterThan(0);
    expect(limits["memory"]).toBe(String(64 * 1024 * 1024));
    expect(limits["pids"]).toBe("32");
    expect(limits["cpu"]).toMatch(/^50000( 100000)?$/);
    handle.kill("SIGTERM"); // PID 1 without a handler ignores it...
    process.kill(proc!.pid, "SIGKILL"); // ...so kill it from the host
    const r = await handle.result;
    expect(r.warnings).toEqual([]);
    for (const d of dirs) expect(existsSync(d)).toBe(false);
  });

  it("cgroups that cannot be created are a warning, not a failure", async () => {
    // a parent that is a file of the hierarchy, not a directory: mkdir fails everywhere
    const r = await sh("echo still-runs", { cgroup: { pidsLimit: 10, parent: "cgroup.procs" } });
    expect(r.exitCode).toBe(0);
    expect(r.out).toBe("still-runs\n");
    expect(r.warnings.length).toBeGreaterThan(0);
    expect(r.warnings.join("\n")).toMatch(/cgroup .*not (created|applied).*Not a directory/);
    expect(r.err).toMatch(/^tsbuild-sandbox: warning: cgroup/m);
  });

  it("a pids limit stops a fork bomb", async () => {
    const r = await sh("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done 2>/dev/null; jobs -p | wc -l", { cgroup: { pidsLimit: 6 } });
    const started = Number(r.out.trim());
    expect(started).toBeLessThan(10);
  });

  it("runs on an overlayfs merged directory: writes land in the upper layer only", async () => {
    const work = tempDir("tsbuild-overlay-");
    const { mkdirSync } = await import("node:fs");
    const { spawnSync } = await import("node:child_process");
    for (const d of ["upper", "work", "merged"]) mkdirSync(join(work, d));
    const m = spawnSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${rootfs},upperdir=${join(work, "upper")},workdir=${join(work, "work")}`, join(work, "merged")], { encoding: "utf8" });
    expect(m.status, m.stderr).toBe(0);
    try {
      const r = await runSandbox(shellSpec(join(work, "merged"), "echo layer > /created-in-step; rm /bin/vi; awk '$5 == \"/\" {print $9}' /proc/self/mountinfo"), { stdout: new Collector() });
      expect(r.exitCode).toBe(0);
      expect(readFileSync(join(work, "upper", "created-in-step"), "utf8")).toBe("layer\n");
      expect(existsSync(join(rootfs, "created-in-step"))).toBe(false);
      expect(existsSync(join(rootfs, "bin", "vi"))).toBe(true);
      // mount points the sandbox had to create are reported, and live in the upper layer
      for (const p of r.createdPaths) expect(existsSync(join(work, "upper", p))).toBe(true);
    } finally {
      spawnSync("umount", [join(work, "merged")]);
    }
  });

  it("a read-only root filesystem, rlimits and umask", async () => {
    const r = await sh("touch /x 2>/dev/null && echo rw || echo ro; ulimit -n; umask; touch /tmp/f 2>/dev/null || echo tmp-ro", {
      readonlyRootfs: true,
      mounts: [{ type: "tmpfs", destination: "/tmp" }],
    }, { rlimits: [{ type: "RLIMIT_NOFILE", soft: 321, hard: 654 }], umask: 0o077 });
    expect(r.out).toBe("ro\n321\n0077\n");
  });

  it("runs several sandboxes at once", async () => {
    const runs = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => sh(`echo $$ ${i}; hostname`, { hostname: `par-${i}` })));
    expect(runs.map((r) => r.out)).toEqual([1, 2, 3, 4, 5, 6].map((i) => `1 ${i}\npar-${i}\n`));
  });

  it("streams large outputs intact on both stdout and stderr", async () => {
    const { createHash } = await import("node:crypto");
    const out = new Collector();
    const err = new Collector();
    const r = await runSandbox(
      shellSpec(rootfs, "head -c 6000000 /dev/urandom > /tmp/blob; sha256sum /tmp/blob >&2; cat /tmp/blob; rm /tmp/blob"),
      { stdout: out, stderr: err },
    );
    expect(r.exitCode).toBe(0);
    const data = out.bytes;
    expect(data.length).toBe(6_000_000);
    expect(err.text.split(" ")[0]).toBe(createHash("sha256").update(data).digest("hex"));
  });

  it("passes stdin through a pipe", async () => {
    const { Readable } = await import("node:stream");
    const out = new Collector();
    const r = await runSandbox(shellSpec(rootfs, "wc -c; ls -l /proc/self/fd/0 | grep -o 'pipe:'"), {
      stdin: Readable.from([Buffer.from("hello sandbox\n")]),
      stdout: out,
    });
    expect(r.exitCode).toBe(0);
    expect(out.text).toBe("14\npipe:\n");
  });

  it("measures how long an empty `true` takes (start to exit)", async () => {
    const spec: SandboxSpec = { ...shellSpec(rootfs, ""), process: { args: ["/bin/true"], env: [], uid: 0, gid: 0 } };
    const times: number[] = [];
    for (let i = 0; i < 25; i++) {
      const t0 = performance.now();
      const r = await runSandbox(spec);
      times.push(performance.now() - t0);
      expect(r.exitCode).toBe(0);
    }
    times.sort((a, b) => a - b);
    const pct = (q: number): string => (times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? 0).toFixed(1);
    console.log(`[measure] sandbox start-to-exit of /bin/true (network none, seccomp, 25 runs): median ${pct(0.5)} ms, p90 ${pct(0.9)} ms, min ${pct(0)} ms`);
    const hostT: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await runSandbox({ ...spec, network: "host" });
      hostT.push(performance.now() - t0);
    }
    hostT.sort((a, b) => a - b);
    console.log(`[measure] same with network host: median ${(hostT[5] ?? 0).toFixed(1)} ms`);
    const coldT: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await runSandbox(spec, { seccompCacheDir: false });
      coldT.push(performance.now() - t0);
    }
    coldT.sort((a, b) => a - b);
    console.log(`[measure] same compiling the seccomp filter every time (no cache): median ${(coldT[5] ?? 0).toFixed(1)} ms`);
    expect(readdirSync(rootfs)).toContain("bin");
  });
});
