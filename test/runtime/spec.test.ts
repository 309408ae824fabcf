import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  capabilityMask,
  DEFAULT_CAPABILITIES,
  defaultSeccompProfile,
  formatCapabilityMask,
  planSandbox,
  SandboxError,
  toOciConfig,
  writeOciBundle,
  type SandboxSpec,
} from "../../src/runtime/index.ts";
import { encodeNativeSpec, parseStatus } from "../../src/runtime/native-spec.ts";
import { tempDir } from "./helpers.ts";

const base: SandboxSpec = {
  process: { args: ["/bin/sh", "-c", "true"], env: ["A=1"], uid: 0, gid: 0 },
  rootfs: "/var/lib/tsbuild/snapshots/1/merged",
  hostname: "buildkitsandbox",
  network: "none",
  security: "sandbox",
};

function records(buf: Buffer): string[] {
  return buf.toString("utf8").split("\0");
}

describe("planSandbox", () => {
  it("Docker's default capability set is a80425fb", () => {
    expect(formatCapabilityMask(capabilityMask(DEFAULT_CAPABILITIES))).toBe("00000000a80425fb");
  });

  it("adds the default PATH, root's capabilities, masks, read-only paths and seccomp", () => {
    const plan = planSandbox(base);
    expect(plan.env).toEqual(["A=1", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    expect(plan.cwd).toBe("/");
    expect(formatCapabilityMask(capabilityMask(plan.capabilities.effective))).toBe("00000000a80425fb");
    expect(plan.capabilities.inheritable).toEqual([]);
    expect(plan.maskedPaths).toContain("/proc/kcore");
    expect(plan.readonlyPaths).toContain("/proc/sys");
    expect(plan.mounts.map((m) => m.destination)).toEqual(["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]);
    expect(plan.mounts.find((m) => m.destination === "/sys")?.options).toContain("ro");
    expect(plan.seccomp?.defaultAction).toBe("SCMP_ACT_ERRNO");
    expect(plan.netns).toEqual({ kind: "new" });
  });

  it("a non-root user keeps the bounding set but starts with no effective capabilities", () => {
    const plan = planSandbox({ ...base, process: { ...base.process, uid: 1000, gid: 1000 } });
    expect(plan.capabilities.effective).toEqual([]);
    expect(plan.capabilities.bounding).toEqual(expect.arrayContaining(["CHOWN", "NET_RAW"]));
  });

  it("insecure: every capability of this process, no seccomp, no masks, /sys writable", () => {
    const plan = planSandbox({ ...base, security: "insecure" });
    expect(plan.seccomp).toBeUndefined();
    expect(plan.maskedPaths).toEqual([]);
    expect(plan.readonlyPaths).toEqual([]);
    expect(plan.capabilities.effective).toContain("SYS_ADMIN");
    expect(plan.mounts.find((m) => m.destination === "/sys")?.options).toContain("rw");
  });

  it("extra mounts: binds (recursive, ro/rw) and tmpfs with size and mode", () => {
    const plan = planSandbox({
      ...base,
      mounts: [
        { type: "bind", source: "/cache/go", destination: "/root/go/", readonly: true },
        { type: "tmpfs", destination: "/run/x", sizeBytes: 1024, mode: 0o700 },
      ],
    });
    expect(plan.mounts.slice(-2)).toEqual([
      { type: "bind", source: "/cache/go", destination: "/root/go", options: ["rbind", "ro"] },
      { type: "tmpfs", source: "tmpfs", destination: "/run/x", options: ["nosuid", "nodev", "rw", "size=1024", "mode=700"] },
    ]);
  });

  it("rejects what a runtime cannot run, with SandboxError INVALID_SPEC", () => {
    const bad: Array<[Partial<SandboxSpec>, RegExp]> = [
      [{ process: { ...base.process, args: [] } }, /no command/],
      [{ process: { ...base.process, cwd: "relative" } }, /absolute/],
      [{ process: { ...base.process, env: ["NOEQUALS"] } }, /KEY=value/],
      [{ process: { ...base.process, args: ["a\0b"] } }, /NUL/],
      [{ process: { ...base.process, uid: -1 } }, /uid/],
      [{ rootfs: "rel/root" }, /absolute/],
      [{ mounts: [{ type: "bind", source: "/a", destination: "b" }] }, /absolute/],
      [{ process: { ...base.process, capAdd: ["NOT_A_CAP"] } }, /unknown capability/],
    ];
    for (const [patch, message] of bad) {
      let caught: unknown;
      try {
        planSandbox({ ...base, ...patch });
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(SandboxError);
      expect((caught as SandboxError).code).toBe("INVALID_SPEC");
      expect((caught as Error).message).toMatch(message);
    }
  });

  it("cgroup limits: cpus become a quota of the period", () => {
    const plan = planSandbox({ ...base, cgroup: { cpus: 1.5, memoryBytes: 1 << 30, pidsLimit: 100 } });
    expect(plan.cgroup).toEqual({ parent: "tsbuild", cpuPeriodUs: 100000, cpuQuotaUs: 150000, memoryBytes: 1 << 30, pidsLimit: 100 });
    expect(planSandbox({ ...base, cgroup: { parent: "/ci/builds/" } }).cgroup?.parent).toBe("ci/builds");
    expect(() => planSandbox({ ...base, cgroup: { parent: "../escape" } })).toThrow(/cgroup.parent/);
  });
});

describe("the helper's spec records", () => {
  it("are NUL-terminated fields, key first, ending with `end`", () => {
    const plan = planSandbox({ ...base, process: { ...base.process, args: ["echo", ""], additionalGids: [5, 6] }, cgroup: { pidsLimit: 7 } });
    const f = records(encodeNativeSpec(plan, { etcFilePaths: [], cgroupName: "tsbuild/abc" }));
    expect(f.slice(0, 6)).toEqual(["version", "1", "rootfs", base.rootfs, "rootfs-readonly", "0"]);
    expect(f.join("|")).toContain("arg|echo|arg||env|A=1");
    expect(f.join("|")).toContain("group|5|group|6");
    expect(f.join("|")).toContain("caps|a80425fb|a80425fb|a80425fb|0|0");
    expect(f.join("|")).toContain("mount|tmpfs|tmpfs|/dev|nosuid,strictatime,mode=755,size=65536k|mount|bind|/dev/null|/dev/null|bind,nosuid,noexec");
    expect(f.join("|")).toContain("seccomp-default|errno|1|seccomp-arch|");
    expect(f.join("|")).toContain("seccomp-rule|errno|38|clone3|");
    expect(f.join("|")).toContain("seccomp-rule|allow|1|clone|0:MASKED_EQ:2114060288:0");
    expect(f.join("|")).toContain("cgroup|tsbuild/abc|cgroup-pids|7|end|");
    expect(f.at(-1)).toBe("");
    expect(f.at(-2)).toBe("end");
  });

  it("bind the /etc files from the host paths given", () => {
    const plan = planSandbox({ ...base, etc: { hosts: "h", resolvConf: "r", readonly: false } });
    const f = records(encodeNativeSpec(plan, { etcFilePaths: ["/tmp/x/hosts", "/tmp/x/resolv"] })).join("|");
    expect(f).toContain("mount|bind|/tmp/x/hosts|/etc/hosts|bind|mount|bind|/tmp/x/resolv|/etc/resolv.conf|bind|");
  });

  it("status records parse back", () => {
    expect(parseStatus(Buffer.from("pid\x0012\x00created\x00/proc\x00exit\x000\x00"))).toEqual([
      { key: "pid", value: "12" },
      { key: "created", value: "/proc" },
      { key: "exit", value: "0" },
    ]);
  });
});

describe("the OCI bundle", () => {
  it("carries the same policy as config.json for runc/crun", async () => {
    const dir = tempDir("tsbuild-bundle-");
    await writeOciBundle(dir, { ...base, etc: { hosts: "127.0.0.1 localhost\n" }, cgroup: { memoryBytes: 1 << 20 } }, { cgroupsPath: "/tsbuild/x" });
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as ReturnType<typeof toOciConfig>;
    expect(config.process.capabilities.effective).toHaveLength(14);
    expect(config.process.capabilities.bounding).toContain("CAP_AUDIT_WRITE");
    expect(config.process.user).toEqual({ uid: 0, gid: 0, umask: 0o022 });
    expect(config.linux.namespaces.map((n) => n.type)).toEqual(["pid", "ipc", "uts", "mount", "network", "cgroup"]);
    expect(config.linux.maskedPaths).toContain("/proc/kcore");
    expect(config.linux.seccomp?.syscalls.length).toBeGreaterThan(10);
    expect(config.linux.resources.memory).toEqual({ limit: 1 << 20 });
    expect(config.linux.cgroupsPath).toBe("/tsbuild/x");
    const hosts = config.mounts.find((m) => m.destination === "/etc/hosts");
    expect(hosts?.options).toEqual(["rbind", "ro"]);
    expect(readFileSync(hosts?.source ?? "", "utf8")).toBe("127.0.0.1 localhost\n");
  });

  it("host network: no network namespace", () => {
    const config = toOciConfig(planSandbox({ ...base, network: "host" }), []);
    expect(config.linux.namespaces.map((n) => n.type)).not.toContain("network");
  });
});

describe("the default seccomp profile", () => {
  it("allows namespace-free clone only without SYS_ADMIN, and the syscalls SYS_ADMIN brings with it", () => {
    const plain = defaultSeccompProfile(DEFAULT_CAPABILITIES, { arch: "x64", kernel: "6.1.0" });
    const names = new Set(plain.syscalls.flatMap((r) => (r.action === "SCMP_ACT_ALLOW" && !r.args ? r.names : [])));
    for (const blocked of ["keyctl", "add_key", "request_key", "bpf", "kexec_load", "init_module", "reboot", "swapon", "mount", "umount2", "pivot_root", "unshare", "setns", "clock_settime", "settimeofday", "acct", "open_by_handle_at", "userfaultfd", "perf_event_open", "lookup_dcookie", "quotactl", "vm86"]) {
      expect(names.has(blocked), blocked).toBe(false);
    }
    expect(names.has("ptrace")).toBe(true);
    expect(names.has("arch_prctl")).toBe(true);
    expect(plain.architectures).toEqual(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    const admin = defaultSeccompProfile([...DEFAULT_CAPABILITIES, "SYS_ADMIN"], { arch: "x64", kernel: "6.1.0" });
    const adminNames = new Set(admin.syscalls.flatMap((r) => r.names));
    expect(adminNames.has("mount")).toBe(true);
    expect(admin.syscalls.some((r) => r.names.includes("clone3") && r.action === "SCMP_ACT_ERRNO")).toBe(false);
    const old = defaultSeccompProfile(DEFAULT_CAPABILITIES, { arch: "x64", kernel: "4.4.0" });
    expect(old.syscalls.some((r) => r.names.includes("ptrace"))).toBe(false);
  });
});
