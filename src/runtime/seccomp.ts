import { release } from "node:os";
import type { CapabilityName } from "./capabilities.ts";

/**
 * A seccomp profile in the OCI runtime-spec shape (`linux.seccomp` of
 * config.json), so the same object drives our helper and runc/crun.
 */
export interface SeccompProfile {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: SeccompRule[];
}

export type SeccompAction =
  | "SCMP_ACT_ALLOW"
  | "SCMP_ACT_ERRNO"
  | "SCMP_ACT_KILL"
  | "SCMP_ACT_KILL_PROCESS"
  | "SCMP_ACT_TRAP"
  | "SCMP_ACT_LOG";

export type SeccompOperator =
  | "SCMP_CMP_NE"
  | "SCMP_CMP_LT"
  | "SCMP_CMP_LE"
  | "SCMP_CMP_EQ"
  | "SCMP_CMP_GE"
  | "SCMP_CMP_GT"
  | "SCMP_CMP_MASKED_EQ";

export interface SeccompArg {
  index: number;
  /** For SCMP_CMP_MASKED_EQ: the mask. */
  value: number;
  /** For SCMP_CMP_MASKED_EQ: the value the masked argument must equal. */
  valueTwo?: number;
  op: SeccompOperator;
}

export interface SeccompRule {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: SeccompArg[];
}

const EPERM = 1;
const ENOSYS = 38;

/*
 * Docker's default profile is an allow list: anything not named here fails
 * with EPERM. What it leaves out on purpose (unless the capability that makes
 * it safe is granted): keyctl, add_key, request_key, bpf, kexec_load,
 * kexec_file_load, init_module, finit_module, delete_module, reboot, swapon,
 * swapoff, mount, umount2, pivot_root, unshare, setns, clone with namespace
 * flags, clone3 (ENOSYS so that libc falls back to clone), personality except
 * the harmless values, clock_settime, settimeofday, acct, open_by_handle_at,
 * userfaultfd, perf_event_open, lookup_dcookie, quotactl, vm86, iopl, ioperm,
 * syslog, ptrace (only on kernels older than 4.8), the new mount API...
 */
const ALWAYS_ALLOWED: readonly string[] = [
  // files and directories
  "access", "faccessat", "faccessat2", "chdir", "fchdir", "getcwd", "chmod", "fchmod", "fchmodat",
  "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32", "creat", "open",
  "openat", "openat2", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock",
  "link", "linkat", "symlink", "symlinkat", "readlink", "readlinkat", "unlink", "unlinkat",
  "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat",
  "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64", "newfstatat", "statx",
  "statfs", "statfs64", "fstatfs", "fstatfs64", "getdents", "getdents64", "truncate", "truncate64",
  "ftruncate", "ftruncate64", "fallocate", "fadvise64", "fadvise64_64", "readahead", "umask",
  "utime", "utimes", "utimensat", "utimensat_time64", "futimesat",
  "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
  "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
  "sync", "syncfs", "fsync", "fdatasync", "sync_file_range", "copy_file_range", "sendfile",
  "sendfile64", "splice", "tee", "vmsplice", "name_to_handle_at",
  // reading and writing
  "read", "readv", "pread64", "preadv", "preadv2", "write", "writev", "pwrite64", "pwritev",
  "pwritev2", "lseek", "_llseek", "ioctl",
  // polling and events
  "poll", "ppoll", "ppoll_time64", "select", "_newselect", "pselect6", "pselect6_time64",
  "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old",
  "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create",
  "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
  "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
  "pipe", "pipe2",
  // asynchronous I/O
  "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
  "io_pgetevents_time64", "io_uring_setup", "io_uring_enter", "io_uring_register",
  // memory
  "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock",
  "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages", "membarrier", "memfd_create",
  "memfd_secret", "pkey_alloc", "pkey_free", "pkey_mprotect", "process_mrelease",
  // processes and threads
  "execve", "execveat", "exit", "exit_group", "fork", "vfork", "wait4", "waitid", "waitpid",
  "kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal", "getpid", "getppid", "gettid",
  "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address", "set_robust_list",
  "get_robust_list", "futex", "futex_time64", "futex_waitv", "rseq", "restart_syscall",
  "prctl", "capget", "capset", "seccomp", "get_thread_area",
  "set_thread_area", "getcpu", "sched_yield", "sched_getaffinity", "sched_setaffinity",
  "sched_getattr", "sched_setattr", "sched_getparam", "sched_setparam", "sched_getscheduler",
  "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
  "sched_rr_get_interval", "sched_rr_get_interval_time64", "getpriority", "setpriority",
  "ioprio_get", "ioprio_set", "getrlimit", "ugetrlimit", "setrlimit", "prlimit64", "getrusage",
  "times", "sysinfo", "uname", "landlock_create_ruleset", "landlock_add_rule",
  "landlock_restrict_self",
  // identity
  "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
  "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32",
  "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid",
  "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32", "setfsuid",
  "setfsuid32", "setfsgid", "setfsgid32", "setgroups", "setgroups32",
  // signals
  "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
  "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
  "sigaltstack", "sigprocmask", "sigreturn", "pause",
  // time
  "alarm", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
  "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "gettimeofday", "time",
  "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
  "timer_gettime64", "timer_settime", "timer_settime64", "adjtimex", "clock_adjtime",
  "clock_adjtime64", "getrandom",
  // sockets
  "accept", "accept4", "bind", "connect", "listen", "getsockname", "getpeername", "getsockopt",
  "setsockopt", "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64", "send", "sendto",
  "sendmsg", "sendmmsg", "shutdown", "socketpair", "socketcall",
  // System V and POSIX IPC (private to the IPC namespace)
  "ipc", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
  "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget", "mq_getsetattr", "mq_notify",
  "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
  "mq_timedsend_time64", "mq_unlink",
];

/** Syscalls that become allowed when the matching capability is granted. */
const ALLOWED_WITH_CAPABILITY: ReadonlyArray<[CapabilityName, readonly string[]]> = [
  ["DAC_READ_SEARCH", ["open_by_handle_at"]],
  [
    "SYS_ADMIN",
    [
      "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
      "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
      "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
      "umount2", "unshare",
    ],
  ],
  ["SYS_BOOT", ["reboot"]],
  ["SYS_CHROOT", ["chroot"]],
  ["SYS_MODULE", ["delete_module", "init_module", "finit_module"]],
  ["SYS_PACCT", ["acct"]],
  ["SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]],
  ["SYS_RAWIO", ["iopl", "ioperm"]],
  ["SYS_TIME", ["settimeofday", "stime", "clock_settime", "clock_settime64"]],
  ["SYS_TTY_CONFIG", ["vhangup"]],
  ["SYS_NICE", ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]],
  ["SYSLOG", ["syslog"]],
  ["BPF", ["bpf"]],
  ["PERFMON", ["perf_event_open"]],
];

/** Namespace flags of clone(2) (CLONE_NEWNS … CLONE_NEWCGROUP): 0x7e020000. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;

/** personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26 variants, query. */
const ALLOWED_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/** AF_VSOCK: a socket family that would reach the host through a hypervisor. */
const AF_VSOCK = 40;

/** Node's `process.arch` → the seccomp architectures a filter for it must cover. */
export function seccompArchitectures(arch: string = process.arch): string[] {
  switch (arch) {
    case "x64":
      return ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
    case "arm64":
      return ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
    case "arm":
      return ["SCMP_ARCH_ARM"];
    case "ia32":
      return ["SCMP_ARCH_X86"];
    case "s390x":
      return ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"];
    case "ppc64":
      return ["SCMP_ARCH_PPC64LE"];
    case "riscv64":
      return ["SCMP_ARCH_RISCV64"];
    default:
      return [];
  }
}

function kernelAtLeast(major: number, minor: number, kernel: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernel);
  if (!m) return true;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > major || (maj === major && min >= minor);
}

/**
 * The default profile for a process holding `capabilities`: Docker's default
 * seccomp profile, resolved for this machine's architecture and kernel.
 */
export function defaultSeccompProfile(
  capabilities: Iterable<string>,
  options: { arch?: string; kernel?: string } = {},
): SeccompProfile {
  const caps = new Set(capabilities);
  const arch = options.arch ?? process.arch;
  const kernel = options.kernel ?? release();
  const allow = (names: readonly string[], args?: SeccompArg[]): SeccompRule =>
    args ? { names: [...names], action: "SCMP_ACT_ALLOW", args } : { names: [...names], action: "SCMP_ACT_ALLOW" };

  const rules: SeccompRule[] = [allow(ALWAYS_ALLOWED)];
  // ptrace became safe to allow with 4.8 (seccomp is re-checked after a tracer changes a syscall).
  if (kernelAtLeast(4, 8, kernel)) rules.push(allow(["process_vm_readv", "process_vm_writev", "ptrace"]));
  rules.push(allow(["socket"], [{ index: 0, value: AF_VSOCK, op: "SCMP_CMP_NE" }]));
  for (const value of ALLOWED_PERSONALITIES) {
    rules.push(allow(["personality"], [{ index: 0, value, op: "SCMP_CMP_EQ" }]));
  }
  switch (arch) {
    case "x64":
      rules.push(allow(["arch_prctl", "modify_ldt"]));
      break;
    case "ia32":
      rules.push(allow(["modify_ldt"]));
      break;
    case "arm":
    case "arm64":
      rules.push(allow(["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"]));
      break;
    case "ppc64":
      rules.push(allow(["sync_file_range2", "swapcontext"]));
      break;
    case "s390x":
      rules.push(allow(["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]));
      break;
    case "riscv64":
      rules.push(allow(["riscv_flush_icache"]));
      break;
  }
  for (const [cap, names] of ALLOWED_WITH_CAPABILITY) {
    if (caps.has(cap)) rules.push(allow(names));
  }
  if (!caps.has("SYS_ADMIN")) {
    // clone without namespace flags (the argument order differs on s390)
    const index = arch === "s390x" ? 1 : 0;
    rules.push(allow(["clone"], [{ index, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }]));
    // clone3 flags live in memory seccomp cannot read: ENOSYS makes libc use clone
    rules.push({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS });
  }
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: EPERM,
    architectures: seccompArchitectures(arch),
    syscalls: rules,
  };
}
