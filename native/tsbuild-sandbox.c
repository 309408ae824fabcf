/*
 * tsbuild-sandbox: runs one process inside fresh Linux namespaces.
 *
 * The caller (src/runtime/ in TypeScript) decides every policy: which mounts,
 * which capabilities, which seccomp rules, which user. This program only
 * carries them out, in the order a container runtime has to:
 *
 *   outer process (in the caller's namespaces)
 *     - reads the spec (NUL-separated records, see README.md)
 *     - compiles the seccomp filter (or reads it from its cache file)
 *     - creates the cgroup(s) and writes the limits
 *     - unshare(CLONE_NEWPID) + fork: the child is PID 1 of the new namespace
 *     - relays stdio when the caller gave sockets, forwards signals,
 *       waits for the child, reports its status, removes the cgroup(s)
 *   child (PID 1 of the new PID namespace)
 *     - joins the cgroup(s), unshares mount/UTS/IPC/cgroup(/net) namespaces
 *     - mounts the root filesystem and everything under it, pivot_root
 *     - hostname, rlimits, umask, working directory
 *     - seccomp, capabilities, uid/gid/groups, no_new_privs
 *     - execs the command, or forks it and stays as a minimal init
 *
 * Errors before exec: "tsbuild-sandbox: <what failed>: <reason>" on stderr and
 * exit code 125 (127 when the command is not found, 126 when it cannot be run).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define PROG "tsbuild-sandbox"
#define SPEC_VERSION "1"
#define EXIT_SETUP 125
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_SPEC_BYTES (64u << 20)

/* ------------------------------------------------------------------------ */
/* Spec                                                                      */

struct mount_rec {
  char *type, *source, *dest, *options;
};
struct link_rec {
  char *target, *path;
};
struct rlimit_rec {
  int resource;
  rlim_t soft, hard;
};
struct seccomp_rule {
  uint32_t action;
  char *name;
  unsigned ncond;
  struct scmp_arg_cmp cond[6];
};

struct spec {
  char *rootfs;
  int rootfs_readonly;
  char **argv;
  size_t argc;
  char **envp;
  size_t envc;
  char *cwd;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  size_t ngroups;
  int has_umask;
  mode_t umask;
  char *hostname;
  char *netns; /* "new", "host" or a path to join */
  int loopback;
  int no_new_privs;
  int has_caps;
  uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
  struct rlimit_rec *rlimits;
  size_t nrlimits;
  struct mount_rec *mounts;
  size_t nmounts;
  struct link_rec *links;
  size_t nlinks;
  char **masked;
  size_t nmasked;
  char **readonly;
  size_t nreadonly;
  int seccomp;
  uint32_t seccomp_default;
  char *seccomp_cache;
  char **seccomp_arches;
  size_t nseccomp_arches;
  struct seccomp_rule *seccomp_rules;
  size_t nseccomp_rules;
  char *cgroup;
  long long cg_memory, cg_cpu_quota, cg_cpu_period, cg_pids;
  int init;
};

static struct spec spec;
static int status_fd = -1;

#define PUSH(arr, n, item)                                      \
  do {                                                          \
    void *p_ = realloc((arr), ((n) + 2) * sizeof(*(arr)));      \
    if (!p_) oom();                                             \
    (arr) = p_;                                                 \
    (arr)[(n)++] = (item);                                      \
  } while (0)

/* ------------------------------------------------------------------------ */
/* Errors and the status channel                                             */

static void oom(void) {
  static const char msg[] = PROG ": out of memory\n";
  if (write(2, msg, sizeof msg - 1) < 0) { /* nothing left to do */ }
  _exit(EXIT_SETUP);
}

/* Writes NUL-terminated fields as one record (one write: atomic on a pipe). */
static void status_record(const char *key, const char *value) {
  if (status_fd < 0) return;
  char buf[4096];
  size_t kl = strlen(key), vl = strlen(value);
  if (kl + vl + 2 > sizeof buf) vl = sizeof buf - kl - 2;
  memcpy(buf, key, kl);
  buf[kl] = 0;
  memcpy(buf + kl + 1, value, vl);
  buf[kl + 1 + vl] = 0;
  ssize_t r;
  do r = write(status_fd, buf, kl + vl + 2);
  while (r < 0 && errno == EINTR);
}

static void status_number(const char *key, long long v) {
  char num[32];
  snprintf(num, sizeof num, "%lld", v);
  status_record(key, num);
}

static void vdie(int code, int err, const char *fmt, va_list ap) {
  char msg[3072];
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  if (err) snprintf(msg + n, sizeof msg - n, ": %s", strerror(err));
  dprintf(2, "%s: %s\n", PROG, msg);
  status_record("error", msg);
  status_number("error-code", code);
  _exit(code);
}

/* Fails with the current errno appended. */
__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
  int err = errno;
  va_list ap;
  va_start(ap, fmt);
  vdie(EXIT_SETUP, err, fmt, ap);
  va_end(ap);
  _exit(EXIT_SETUP);
}

/* Fails with a given exit code and errno (0: no reason appended). */
__attribute__((noreturn, format(printf, 3, 4))) static void die_code(int code, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(code, err, fmt, ap);
  va_end(ap);
  _exit(code);
}

__attribute__((format(printf, 1, 2))) static void warn(const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  dprintf(2, "%s: warning: %s\n", PROG, msg);
  status_record("warning", msg);
}

/* ------------------------------------------------------------------------ */
/* Spec parsing                                                              */

struct cursor {
  char *buf;
  size_t len, pos;
};

static char *next_field(struct cursor *c, const char *key) {
  if (c->pos >= c->len) die_code(EXIT_SETUP, 0, "invalid spec: record %s is truncated", key);
  char *start = c->buf + c->pos;
  char *nul = memchr(start, 0, c->len - c->pos);
  if (!nul) die_code(EXIT_SETUP, 0, "invalid spec: record %s is not NUL-terminated", key);
  c->pos = (size_t)(nul - c->buf) + 1;
  return start;
}

static long long parse_num(const char *s, int base, const char *what) {
  if (!*s) die_code(EXIT_SETUP, 0, "invalid spec: empty number for %s", what);
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, base);
  if (errno || *end) die_code(EXIT_SETUP, 0, "invalid spec: bad number %s for %s", s, what);
  return v;
}

static uint64_t parse_mask(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 16);
  if (!*s || errno || *end) die_code(EXIT_SETUP, 0, "invalid spec: bad mask %s for %s", s, what);
  return v;
}

static int parse_bool(const char *s, const char *what) {
  if (!strcmp(s, "1")) return 1;
  if (!strcmp(s, "0")) return 0;
  die_code(EXIT_SETUP, 0, "invalid spec: %s must be 0 or 1, not %s", what, s);
}

static const struct {
  const char *name;
  int resource;
} rlimit_names[] = {
    {"CPU", RLIMIT_CPU},         {"FSIZE", RLIMIT_FSIZE},     {"DATA", RLIMIT_DATA},
    {"STACK", RLIMIT_STACK},     {"CORE", RLIMIT_CORE},       {"RSS", RLIMIT_RSS},
    {"NPROC", RLIMIT_NPROC},     {"NOFILE", RLIMIT_NOFILE},   {"MEMLOCK", RLIMIT_MEMLOCK},
    {"AS", RLIMIT_AS},           {"LOCKS", RLIMIT_LOCKS},     {"SIGPENDING", RLIMIT_SIGPENDING},
    {"MSGQUEUE", RLIMIT_MSGQUEUE}, {"NICE", RLIMIT_NICE},     {"RTPRIO", RLIMIT_RTPRIO},
    {"RTTIME", RLIMIT_RTTIME},
};

static int rlimit_resource(const char *name) {
  if (!strncasecmp(name, "RLIMIT_", 7)) name += 7;
  for (size_t i = 0; i < sizeof rlimit_names / sizeof rlimit_names[0]; i++)
    if (!strcasecmp(rlimit_names[i].name, name)) return rlimit_names[i].resource;
  die_code(EXIT_SETUP, 0, "invalid spec: unknown rlimit %s", name);
}

static rlim_t parse_rlim(const char *s) {
  if (!strcmp(s, "unlimited") || !strcmp(s, "-1")) return RLIM_INFINITY;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || errno || *end) die_code(EXIT_SETUP, 0, "invalid spec: bad rlimit value %s", s);
  return (rlim_t)v;
}

static uint32_t parse_seccomp_action(const char *action, const char *err) {
  if (!strcmp(action, "allow")) return SCMP_ACT_ALLOW;
  if (!strcmp(action, "errno")) return SCMP_ACT_ERRNO((uint16_t)parse_num(err, 10, "seccomp errno"));
  if (!strcmp(action, "kill") || !strcmp(action, "kill_thread")) return SCMP_ACT_KILL;
  if (!strcmp(action, "kill_process")) return SCMP_ACT_KILL_PROCESS;
  if (!strcmp(action, "trap")) return SCMP_ACT_TRAP;
  if (!strcmp(action, "log")) return SCMP_ACT_LOG;
  die_code(EXIT_SETUP, 0, "invalid spec: unknown seccomp action %s", action);
}

static enum scmp_compare parse_seccomp_op(const char *op) {
  static const struct {
    const char *name;
    enum scmp_compare op;
  } ops[] = {{"NE", SCMP_CMP_NE}, {"LT", SCMP_CMP_LT}, {"LE", SCMP_CMP_LE}, {"EQ", SCMP_CMP_EQ},
             {"GE", SCMP_CMP_GE}, {"GT", SCMP_CMP_GT}, {"MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (!strcmp(ops[i].name, op)) return ops[i].op;
  die_code(EXIT_SETUP, 0, "invalid spec: unknown seccomp operator %s", op);
}

/* Conditions: "index:OP:value:valueTwo" joined with ';' (empty: none). */
static void parse_seccomp_conditions(struct seccomp_rule *r, char *conds) {
  r->ncond = 0;
  if (!*conds) return;
  char *save = NULL;
  for (char *c = strtok_r(conds, ";", &save); c; c = strtok_r(NULL, ";", &save)) {
    if (r->ncond >= 6) die_code(EXIT_SETUP, 0, "invalid spec: too many seccomp conditions for %s", r->name);
    char *f[4];
    char *s2 = NULL;
    int n = 0;
    for (char *p = strtok_r(c, ":", &s2); p && n < 4; p = strtok_r(NULL, ":", &s2)) f[n++] = p;
    if (n != 4) die_code(EXIT_SETUP, 0, "invalid spec: bad seccomp condition for %s", r->name);
    struct scmp_arg_cmp *a = &r->cond[r->ncond++];
    a->arg = (unsigned)parse_num(f[0], 10, "seccomp argument index");
    a->op = parse_seccomp_op(f[1]);
    errno = 0;
    a->datum_a = strtoull(f[2], NULL, 10);
    a->datum_b = strtoull(f[3], NULL, 10);
  }
}

static void read_spec(int fd) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (!buf) oom();
  for (;;) {
    if (len == cap) {
      if (cap >= MAX_SPEC_BYTES) die_code(EXIT_SETUP, 0, "invalid spec: larger than %u bytes", MAX_SPEC_BYTES);
      cap *= 2;
      buf = realloc(buf, cap);
      if (!buf) oom();
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read spec from fd %d", fd);
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);

  struct spec *s = &spec;
  memset(s, 0, sizeof *s);
  s->netns = "new";
  s->cg_memory = s->cg_cpu_quota = s->cg_cpu_period = s->cg_pids = -1;
  s->argv = calloc(1, sizeof(char *));
  s->envp = calloc(1, sizeof(char *));
  if (!s->argv || !s->envp) oom();

  struct cursor c = {buf, len, 0};
  int seen_version = 0, seen_end = 0;
  while (c.pos < c.len) {
    char *key = next_field(&c, "key");
#define F() next_field(&c, key)
    if (!strcmp(key, "version")) {
      char *v = F();
      if (strcmp(v, SPEC_VERSION)) die_code(EXIT_SETUP, 0, "invalid spec: version %s, this helper reads %s (rebuild it: make -C native)", v, SPEC_VERSION);
      seen_version = 1;
    } else if (!strcmp(key, "rootfs")) {
      s->rootfs = F();
    } else if (!strcmp(key, "rootfs-readonly")) {
      s->rootfs_readonly = parse_bool(F(), key);
    } else if (!strcmp(key, "arg")) {
      PUSH(s->argv, s->argc, F());
      s->argv[s->argc] = NULL;
    } else if (!strcmp(key, "env")) {
      PUSH(s->envp, s->envc, F());
      s->envp[s->envc] = NULL;
    } else if (!strcmp(key, "cwd")) {
      s->cwd = F();
    } else if (!strcmp(key, "uid")) {
      s->uid = (uid_t)parse_num(F(), 10, key);
    } else if (!strcmp(key, "gid")) {
      s->gid = (gid_t)parse_num(F(), 10, key);
    } else if (!strcmp(key, "group")) {
      gid_t g = (gid_t)parse_num(F(), 10, key);
      PUSH(s->groups, s->ngroups, g);
    } else if (!strcmp(key, "umask")) {
      s->umask = (mode_t)parse_num(F(), 8, key);
      s->has_umask = 1;
    } else if (!strcmp(key, "hostname")) {
      s->hostname = F();
    } else if (!strcmp(key, "netns")) {
      s->netns = F();
    } else if (!strcmp(key, "loopback")) {
      s->loopback = parse_bool(F(), key);
    } else if (!strcmp(key, "no-new-privileges")) {
      s->no_new_privs = parse_bool(F(), key);
    } else if (!strcmp(key, "caps")) {
      s->has_caps = 1;
      s->cap_bounding = parse_mask(F(), "bounding capabilities");
      s->cap_effective = parse_mask(F(), "effective capabilities");
      s->cap_permitted = parse_mask(F(), "permitted capabilities");
      s->cap_inheritable = parse_mask(F(), "inheritable capabilities");
      s->cap_ambient = parse_mask(F(), "ambient capabilities");
    } else if (!strcmp(key, "rlimit")) {
      struct rlimit_rec r;
      r.resource = rlimit_resource(F());
      r.soft = parse_rlim(F());
      r.hard = parse_rlim(F());
      PUSH(s->rlimits, s->nrlimits, r);
    } else if (!strcmp(key, "mount")) {
      struct mount_rec m;
      m.type = F();
      m.source = F();
      m.dest = F();
      m.options = F();
      if (m.dest[0] != '/') die_code(EXIT_SETUP, 0, "invalid spec: mount destination %s is not absolute", m.dest);
      PUSH(s->mounts, s->nmounts, m);
    } else if (!strcmp(key, "symlink")) {
      struct link_rec l;
      l.target = F();
      l.path = F();
      PUSH(s->links, s->nlinks, l);
    } else if (!strcmp(key, "mask")) {
      PUSH(s->masked, s->nmasked, F());
    } else if (!strcmp(key, "readonly")) {
      PUSH(s->readonly, s->nreadonly, F());
    } else if (!strcmp(key, "seccomp-default")) {
      char *action = F();
      char *err = F();
      s->seccomp = 1;
      s->seccomp_default = parse_seccomp_action(action, err);
    } else if (!strcmp(key, "seccomp-cache")) {
      s->seccomp_cache = F();
    } else if (!strcmp(key, "seccomp-arch")) {
      PUSH(s->seccomp_arches, s->nseccomp_arches, F());
    } else if (!strcmp(key, "seccomp-rule")) {
      struct seccomp_rule r;
      memset(&r, 0, sizeof r);
      char *action = F();
      char *err = F();
      r.action = parse_seccomp_action(action, err);
      r.name = F();
      parse_seccomp_conditions(&r, F());
      PUSH(s->seccomp_rules, s->nseccomp_rules, r);
    } else if (!strcmp(key, "cgroup")) {
      s->cgroup = F();
    } else if (!strcmp(key, "cgroup-memory")) {
      s->cg_memory = parse_num(F(), 10, key);
    } else if (!strcmp(key, "cgroup-cpu")) {
      s->cg_cpu_quota = parse_num(F(), 10, "cgroup-cpu quota");
      s->cg_cpu_period = parse_num(F(), 10, "cgroup-cpu period");
    } else if (!strcmp(key, "cgroup-pids")) {
      s->cg_pids = parse_num(F(), 10, key);
    } else if (!strcmp(key, "init")) {
      s->init = parse_bool(F(), key);
    } else if (!strcmp(key, "end")) {
      seen_end = 1;
      break;
    } else {
      die_code(EXIT_SETUP, 0, "invalid spec: unknown record %s (is the helper older than the caller? make -C native)", key);
    }
#undef F
  }
  if (!seen_version) die_code(EXIT_SETUP, 0, "invalid spec: no version record");
  if (!seen_end) die_code(EXIT_SETUP, 0, "invalid spec: truncated (no end record)");
  if (!s->rootfs) die_code(EXIT_SETUP, 0, "invalid spec: no rootfs");
  if (s->argc == 0) die_code(EXIT_SETUP, 0, "invalid spec: no command");
  if (s->cgroup && (strstr(s->cgroup, "..") || s->cgroup[0] == '/' || !s->cgroup[0]))
    die_code(EXIT_SETUP, 0, "invalid spec: bad cgroup name %s", s->cgroup);
}

/* ------------------------------------------------------------------------ */
/* Small file helpers                                                        */

static int write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = strlen(value);
  ssize_t n = write(fd, value, len);
  int err = errno;
  close(fd);
  if (n != (ssize_t)len) {
    errno = n < 0 ? err : EIO;
    return -1;
  }
  return 0;
}

static int read_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  int err = errno;
  close(fd);
  if (n < 0) {
    errno = err;
    return -1;
  }
  buf[n] = 0;
  return 0;
}

/* mkdir -p on a host path. */
static int mkdir_all(const char *path, mode_t mode) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, mode) && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, mode) && errno != EEXIST) return -1;
  return 0;
}

static int is_fs(const char *path, long magic) {
  struct statfs st;
  return statfs(path, &st) == 0 && st.f_type == magic;
}

/* ------------------------------------------------------------------------ */
/* cgroups                                                                   */

struct cgroup_dir {
  char path[512];
  int v2;
};
static struct cgroup_dir cgroups[8];
static int ncgroups;

static int controller_listed(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)); p += n) {
    int start = p == list || isspace((unsigned char)p[-1]);
    int end = !p[n] || isspace((unsigned char)p[n]);
    if (start && end) return 1;
  }
  return 0;
}

static void add_cgroup(const char *path, int v2) {
  if (ncgroups >= (int)(sizeof cgroups / sizeof cgroups[0])) return;
  if (strlen(path) >= sizeof cgroups[ncgroups].path) {
    warn("cgroup path too long: %s", path);
    return;
  }
  snprintf(cgroups[ncgroups].path, sizeof cgroups[ncgroups].path, "%s", path);
  cgroups[ncgroups].v2 = v2;
  ncgroups++;
}

static void cg_write(const char *dir, const char *file, const char *value, int *ok) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  if (write_file(path, value)) {
    warn("cgroup limit not applied: write %s to %s: %s", value, path, strerror(errno));
    *ok = 0;
  }
}

/* Creates the cgroup(s) of this run and writes the limits. Anything that is
 * not writable is a warning: the step still runs, without that limit. */
static void setup_cgroups(void) {
  struct spec *s = &spec;
  if (!s->cgroup) return;
  int want_mem = s->cg_memory >= 0, want_cpu = s->cg_cpu_quota > 0, want_pids = s->cg_pids >= 0;
  int done_mem = 0, done_cpu = 0, done_pids = 0;
  char v2root[64] = "";
  char path[PATH_MAX];
  char num[64];

  if (is_fs("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC)) strcpy(v2root, "/sys/fs/cgroup");
  else if (is_fs("/sys/fs/cgroup/unified", CGROUP2_SUPER_MAGIC)) strcpy(v2root, "/sys/fs/cgroup/unified");

  if (v2root[0]) {
    char controllers[1024] = "";
    snprintf(path, sizeof path, "%s/cgroup.controllers", v2root);
    if (read_file(path, controllers, sizeof controllers)) controllers[0] = 0;
    int v2_mem = want_mem && controller_listed(controllers, "memory");
    int v2_cpu = want_cpu && controller_listed(controllers, "cpu");
    int v2_pids = want_pids && controller_listed(controllers, "pids");
    /* Enable the controllers on every level above the leaf. */
    char enable[64] = "";
    if (v2_mem) strcat(enable, "+memory ");
    if (v2_cpu) strcat(enable, "+cpu ");
    if (v2_pids) strcat(enable, "+pids ");
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s", s->cgroup);
    int ok = 1;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", v2root);
    for (char *part = rel, *slash; ok; part = slash + 1) {
      if (enable[0]) {
        /* one controller per write: a failure of one does not stop the others */
        char one[16];
        for (const char *p = enable; sscanf(p, "%15s", one) == 1; p = strchr(p, ' ') + 1) {
          char subtree[PATH_MAX + 32];
          snprintf(subtree, sizeof subtree, "%s/cgroup.subtree_control", dir);
          if (write_file(subtree, one)) {
            warn("cgroup controller %s not enabled in %s: %s", one + 1, dir, strerror(errno));
            if (!strcmp(one, "+memory")) v2_mem = 0;
            if (!strcmp(one, "+cpu")) v2_cpu = 0;
            if (!strcmp(one, "+pids")) v2_pids = 0;
          }
          if (!strchr(p, ' ')) break;
        }
      }
      slash = strchr(part, '/');
      if (slash) *slash = 0;
      size_t dl = strlen(dir);
      if (snprintf(dir + dl, sizeof dir - dl, "/%s", part) >= (int)(sizeof dir - dl)) errno = ENAMETOOLONG;
      else if (mkdir(dir, 0755) == 0 || errno == EEXIST) errno = 0;
      if (errno) {
        warn("cgroup not created: mkdir %s: %s", dir, strerror(errno));
        ok = 0;
        break;
      }
      if (!slash) break;
    }
    if (ok) {
      int lim_ok = 1;
      if (v2_mem) {
        snprintf(num, sizeof num, "%lld", s->cg_memory);
        cg_write(dir, "memory.max", num, &lim_ok);
        if (lim_ok) done_mem = 1;
      }
      if (v2_cpu) {
        lim_ok = 1;
        snprintf(num, sizeof num, "%lld %lld", s->cg_cpu_quota, s->cg_cpu_period > 0 ? s->cg_cpu_period : 100000);
        cg_write(dir, "cpu.max", num, &lim_ok);
        if (lim_ok) done_cpu = 1;
      }
      if (v2_pids) {
        lim_ok = 1;
        if (s->cg_pids > 0) snprintf(num, sizeof num, "%lld", s->cg_pids);
        else strcpy(num, "max");
        cg_write(dir, "pids.max", num, &lim_ok);
        if (lim_ok) done_pids = 1;
      }
      add_cgroup(dir, 1);
    }
  }

  /* cgroup v1 hierarchies for what the unified hierarchy does not offer. */
  struct {
    int want, *done;
    const char *controller, *file;
  } v1[] = {
      {want_mem, &done_mem, "memory", "memory.limit_in_bytes"},
      {want_cpu, &done_cpu, "cpu", "cpu.cfs_quota_us"},
      {want_pids, &done_pids, "pids", "pids.max"},
  };
  for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++) {
    if (!v1[i].want || *v1[i].done) continue;
    char root[128];
    snprintf(root, sizeof root, "/sys/fs/cgroup/%s", v1[i].controller);
    if (!is_fs(root, CGROUP_SUPER_MAGIC)) {
      warn("cgroup limit not applied: no writable %s controller (cgroup v2 or v1)", v1[i].controller);
      continue;
    }
    snprintf(path, sizeof path, "%s/%s", root, s->cgroup);
    if (mkdir_all(path, 0755)) {
      warn("cgroup limit not applied: mkdir %s: %s", path, strerror(errno));
      continue;
    }
    int lim_ok = 1;
    if (!strcmp(v1[i].controller, "cpu")) {
      snprintf(num, sizeof num, "%lld", s->cg_cpu_period > 0 ? s->cg_cpu_period : 100000);
      cg_write(path, "cpu.cfs_period_us", num, &lim_ok);
      snprintf(num, sizeof num, "%lld", s->cg_cpu_quota);
    } else if (!strcmp(v1[i].controller, "memory")) {
      snprintf(num, sizeof num, "%lld", s->cg_memory);
    } else {
      if (s->cg_pids > 0) snprintf(num, sizeof num, "%lld", s->cg_pids);
      else strcpy(num, "max");
    }
    if (lim_ok) cg_write(path, v1[i].file, num, &lim_ok);
    if (lim_ok) *v1[i].done = 1;
    add_cgroup(path, 0);
  }
}

/* In the child, before anything else: move this process into the cgroup(s). */
static void join_cgroups(void) {
  char path[sizeof cgroups[0].path + 32];
  for (int i = 0; i < ncgroups; i++) {
    if (snprintf(path, sizeof path, "%s/cgroup.procs", cgroups[i].path) >= (int)sizeof path) continue;
    if (write_file(path, "0")) warn("cgroup not joined: write %s: %s", path, strerror(errno));
  }
}

/* In the outer process after the child is gone: kill leftovers, remove. */
static void cleanup_cgroups(void) {
  char path[sizeof cgroups[0].path + 32];
  for (int i = 0; i < ncgroups; i++) {
    if (cgroups[i].v2) {
      int n = snprintf(path, sizeof path, "%s/cgroup.kill", cgroups[i].path);
      if (n > 0 && n < (int)sizeof path && access(path, F_OK) == 0) write_file(path, "1");
    }
    for (int tries = 0; tries < 200; tries++) {
      if (rmdir(cgroups[i].path) == 0 || errno == ENOENT) break;
      if (errno != EBUSY) {
        warn("cgroup not removed: rmdir %s: %s", cgroups[i].path, strerror(errno));
        break;
      }
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Paths inside the new root                                                 */

static int rootfd = -1;
static uint64_t root_mnt_id;

static int open_in_root(const char *path, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (uint64_t)(O_PATH | O_CLOEXEC | flags);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  while (*path == '/') path++;
  if (!*path) path = ".";
  for (int tries = 0;; tries++) {
    int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN || tries > 32) return fd;
  }
}

static uint64_t mount_id_of(int fd) {
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx)) return 0;
  return stx.stx_mnt_id;
}

static const char *fd_path(int fd, char *buf, size_t size) {
  snprintf(buf, size, "/proc/self/fd/%d", fd);
  return buf;
}

/* Reports a mount point created in the root filesystem itself (not in a
 * tmpfs mounted over it), so that the caller can remove it afterwards. */
static void report_created(int parentfd, const char *path) {
  if (mount_id_of(parentfd) == root_mnt_id) status_record("created", path);
}

/*
 * Opens `path` inside the new root as an O_PATH descriptor, creating missing
 * components (directories, and the last one as a directory or an empty file).
 * Symlinks are resolved inside the root (RESOLVE_IN_ROOT): a link to /etc can
 * never reach the host's /etc.
 */
static int resolve_create(const char *want, int last_is_dir) {
  char cur[PATH_MAX];
  if (snprintf(cur, sizeof cur, "%s", want) >= (int)sizeof cur) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (int hops = 0; hops < 40; hops++) {
    int fd = open_in_root(cur, 0);
    if (fd >= 0) return fd;
    if (errno != ENOENT) return -1;

    /* Split into components. */
    char copy[PATH_MAX];
    strcpy(copy, cur);
    char *comps[PATH_MAX / 2];
    int n = 0;
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
      if (strcmp(c, ".")) comps[n++] = c;

    char prefix[PATH_MAX] = "";
    int restarted = 0;
    for (int i = 0; i < n && !restarted; i++) {
      char candidate[PATH_MAX];
      snprintf(candidate, sizeof candidate, "%s/%s", prefix, comps[i]);
      int f = open_in_root(candidate, 0);
      if (f >= 0) {
        close(f);
        strcpy(prefix, candidate);
        continue;
      }
      if (errno != ENOENT) return -1;
      int pfd = open_in_root(prefix[0] ? prefix : "/", O_DIRECTORY);
      if (pfd < 0) return -1;
      int last = i == n - 1;
      int r;
      if (!last || last_is_dir) {
        r = mkdirat(pfd, comps[i], 0755);
      } else {
        int t = openat(pfd, comps[i], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        r = t < 0 ? -1 : 0;
        if (t >= 0) close(t);
      }
      if (r == 0) {
        report_created(pfd, candidate);
        close(pfd);
        strcpy(prefix, candidate);
        continue;
      }
      if (errno != EEXIST) {
        int err = errno;
        close(pfd);
        errno = err;
        return -1;
      }
      /* It exists but cannot be opened: a dangling symlink. Follow it by
       * hand (the resolution stays inside the root) and start again. */
      char target[PATH_MAX];
      ssize_t l = readlinkat(pfd, comps[i], target, sizeof target - 1);
      int err = errno;
      close(pfd);
      if (l < 0) {
        errno = err == EINVAL ? EEXIST : err;
        return -1;
      }
      target[l] = 0;
      char next[PATH_MAX];
      int w = target[0] == '/' ? snprintf(next, sizeof next, "%s", target)
                               : snprintf(next, sizeof next, "%s/%s", prefix, target);
      for (int j = i + 1; j < n && w >= 0 && (size_t)w < sizeof next; j++) {
        size_t nl = strlen(next);
        int k = snprintf(next + nl, sizeof next - nl, "/%s", comps[j]);
        w = k < 0 ? k : (int)nl + k;
      }
      if (w < 0 || (size_t)w >= sizeof next) {
        errno = ENAMETOOLONG;
        return -1;
      }
      strcpy(cur, next);
      restarted = 1;
    }
    if (!restarted) {
      /* every component now exists */
      int fd2 = open_in_root(cur, 0);
      if (fd2 >= 0 || errno != ENOENT) return fd2;
    }
  }
  errno = ELOOP;
  return -1;
}

/* ------------------------------------------------------------------------ */
/* Mounts                                                                    */

struct mount_opts {
  unsigned long flags;
  unsigned long clear;
  char data[1024];
};

static void parse_mount_options(const char *opts, struct mount_opts *o) {
  static const struct {
    const char *name;
    int clear;
    unsigned long flag;
  } table[] = {
      {"ro", 0, MS_RDONLY},         {"rw", 1, MS_RDONLY},          {"nosuid", 0, MS_NOSUID},
      {"suid", 1, MS_NOSUID},       {"nodev", 0, MS_NODEV},        {"dev", 1, MS_NODEV},
      {"noexec", 0, MS_NOEXEC},     {"exec", 1, MS_NOEXEC},        {"sync", 0, MS_SYNCHRONOUS},
      {"async", 1, MS_SYNCHRONOUS}, {"noatime", 0, MS_NOATIME},    {"atime", 1, MS_NOATIME},
      {"nodiratime", 0, MS_NODIRATIME}, {"diratime", 1, MS_NODIRATIME}, {"relatime", 0, MS_RELATIME},
      {"norelatime", 1, MS_RELATIME}, {"strictatime", 0, MS_STRICTATIME}, {"bind", 0, MS_BIND},
      {"rbind", 0, MS_BIND | MS_REC},
  };
  static const char *ignored[] = {"private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable", "defaults"};
  memset(o, 0, sizeof *o);
  char copy[2048];
  snprintf(copy, sizeof copy, "%s", opts);
  char *save = NULL;
  for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
    int known = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
      if (strcmp(table[i].name, opt)) continue;
      if (table[i].clear) {
        o->flags &= ~table[i].flag;
        o->clear |= table[i].flag;
      } else {
        o->flags |= table[i].flag;
      }
      known = 1;
      break;
    }
    for (size_t i = 0; !known && i < sizeof ignored / sizeof ignored[0]; i++)
      if (!strcmp(ignored[i], opt)) known = 1;
    if (known) continue;
    size_t dl = strlen(o->data);
    snprintf(o->data + dl, sizeof o->data - dl, "%s%s", dl ? "," : "", opt);
  }
}

/* Flags of the mount an fd lives on that a bind remount must keep. */
static unsigned long kept_flags(int fd) {
  struct statvfs st;
  unsigned long f = 0;
  if (fstatvfs(fd, &st)) return 0;
  if (st.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) f |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) f |= MS_RELATIME;
  if (st.f_flag & ST_RDONLY) f |= MS_RDONLY;
  return f;
}

/* Remounts the bind mount at `dest` (inside the root) with extra flags. */
static void bind_remount(const char *dest, unsigned long add, unsigned long clear) {
  char p[64];
  int fd = open_in_root(dest, 0);
  if (fd < 0) die("open %s for remount", dest);
  unsigned long flags = (kept_flags(fd) | add) & ~clear;
  if (mount(NULL, fd_path(fd, p, sizeof p), NULL, MS_REMOUNT | MS_BIND | flags, NULL))
    die("remount %s (%s%s%s)", dest, flags & MS_RDONLY ? "ro" : "rw", flags & MS_NOSUID ? ",nosuid" : "", flags & MS_NOEXEC ? ",noexec" : "");
  close(fd);
}

static void do_mount(const struct mount_rec *m) {
  struct mount_opts o;
  char p[64];
  parse_mount_options(m->options, &o);
  int is_bind = !strcmp(m->type, "bind") || !strcmp(m->type, "rbind") || (o.flags & MS_BIND);
  if (!strcmp(m->type, "rbind")) o.flags |= MS_BIND | MS_REC;
  if (is_bind) {
    struct stat st;
    if (stat(m->source, &st)) die("bind mount source %s", m->source);
    int fd = resolve_create(m->dest, S_ISDIR(st.st_mode));
    if (fd < 0) die("create mount point %s", m->dest);
    if (mount(m->source, fd_path(fd, p, sizeof p), NULL, MS_BIND | (o.flags & MS_REC), NULL))
      die("bind mount %s on %s", m->source, m->dest);
    close(fd);
    unsigned long extra = o.flags & ~(MS_BIND | MS_REC);
    if (extra || o.clear) bind_remount(m->dest, extra, o.clear);
    return;
  }
  int fd = resolve_create(m->dest, 1);
  if (fd < 0) die("create mount point %s", m->dest);
  const char *source = m->source[0] ? m->source : m->type;
  if (mount(source, fd_path(fd, p, sizeof p), m->type, o.flags, o.data[0] ? o.data : NULL)) {
    if (!strcmp(m->type, "sysfs") && (errno == EPERM || errno == EBUSY)) {
      /* sysfs of a network namespace we do not own: bind the host's instead */
      if (mount("/sys", p, NULL, MS_BIND | MS_REC, NULL)) die("bind mount /sys on %s", m->dest);
      close(fd);
      bind_remount(m->dest, o.flags & ~MS_REC, 0);
      return;
    }
    die("mount %s on %s%s%s", m->type, m->dest, o.data[0] ? " with " : "", o.data);
  }
  close(fd);
}

static void do_symlink(const struct link_rec *l) {
  char parent[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", l->path);
  char *slash = strrchr(parent, '/');
  const char *name = l->path;
  if (slash) {
    *slash = 0;
    name = slash + 1;
  }
  int pfd = resolve_create(parent[0] ? parent : "/", 1);
  if (pfd < 0) die("create directory for symlink %s", l->path);
  /* an existing entry (the image's own /dev/fd...) is left as it is */
  if (symlinkat(l->target, pfd, name) && errno != EEXIST) die("symlink %s -> %s", l->path, l->target);
  close(pfd);
}

static void mask_path(const char *path) {
  char p[64];
  int fd = open_in_root(path, 0);
  if (fd < 0) {
    if (errno == ENOENT) return;
    die("open masked path %s", path);
  }
  struct stat st;
  if (fstat(fd, &st)) die("stat masked path %s", path);
  int r;
  if (S_ISDIR(st.st_mode)) r = mount("tmpfs", fd_path(fd, p, sizeof p), "tmpfs", MS_RDONLY, NULL);
  else r = mount("/dev/null", fd_path(fd, p, sizeof p), NULL, MS_BIND, NULL);
  if (r) die("mask %s", path);
  close(fd);
}

static void readonly_path(const char *path) {
  char p[64];
  int fd = open_in_root(path, 0);
  if (fd < 0) {
    if (errno == ENOENT) return;
    die("open read-only path %s", path);
  }
  if (mount(fd_path(fd, p, sizeof p), p, NULL, MS_BIND | MS_REC, NULL)) die("bind %s read-only", path);
  close(fd);
  bind_remount(path, MS_RDONLY, 0);
}

static void pivot_to(const char *rootfs) {
  int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0) die("open /");
  int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (newroot < 0) die("open %s", rootfs);
  if (fchdir(newroot)) die("chdir %s", rootfs);
  if (syscall(SYS_pivot_root, ".", ".")) die("pivot_root %s", rootfs);
  if (fchdir(oldroot)) die("chdir to the old root");
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL)) die("make the old root a slave");
  if (umount2(".", MNT_DETACH)) die("unmount the old root");
  if (chdir("/")) die("chdir /");
  close(oldroot);
  close(newroot);
}

static void setup_rootfs(void) {
  struct spec *s = &spec;
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) die("make mounts private");
  if (mount(s->rootfs, s->rootfs, NULL, MS_BIND | MS_REC, NULL)) die("bind mount rootfs %s", s->rootfs);
  rootfd = open(s->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) die("open rootfs %s", s->rootfs);
  root_mnt_id = mount_id_of(rootfd);

  for (size_t i = 0; i < s->nmounts; i++) do_mount(&s->mounts[i]);
  for (size_t i = 0; i < s->nlinks; i++) do_symlink(&s->links[i]);
  for (size_t i = 0; i < s->nmasked; i++) mask_path(s->masked[i]);
  for (size_t i = 0; i < s->nreadonly; i++) readonly_path(s->readonly[i]);
  close(rootfd);
  rootfd = -1;

  pivot_to(s->rootfs);
  if (s->rootfs_readonly) {
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    unsigned long flags = fd >= 0 ? kept_flags(fd) : 0;
    if (fd >= 0) close(fd);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, NULL)) die("remount / read-only");
  }
}

/* ------------------------------------------------------------------------ */
/* Network                                                                   */

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket for lo");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr)) die("get flags of lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr)) die("bring lo up");
  close(s);
}

/* ------------------------------------------------------------------------ */
/* Seccomp, capabilities, identity                                           */

/*
 * The filter is compiled (libseccomp) in the outer process, before fork, into
 * a classic BPF program kept in memory; PID 1 installs it with seccomp(2).
 * Compiling Docker's profile for three architectures costs ~10 ms, so with a
 * `seccomp-cache` path the program is read from / written to that file (the
 * caller names it after a hash of the rules).
 */
static struct sock_filter *bpf_prog;
static unsigned short bpf_len;

#define MAX_BPF_BYTES (4096 * sizeof(struct sock_filter))

static int read_cached_bpf(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  struct stat st;
  /* only a file this user wrote and nobody else can change */
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) || st.st_size <= 0 ||
      st.st_size % (off_t)sizeof(struct sock_filter) || (size_t)st.st_size > MAX_BPF_BYTES) {
    close(fd);
    return -1;
  }
  struct sock_filter *prog = malloc((size_t)st.st_size);
  if (!prog) oom();
  ssize_t n = read(fd, prog, (size_t)st.st_size);
  close(fd);
  if (n != st.st_size) {
    free(prog);
    return -1;
  }
  bpf_prog = prog;
  bpf_len = (unsigned short)(st.st_size / (off_t)sizeof(struct sock_filter));
  return 0;
}

static void write_cached_bpf(const char *path) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof tmp) return;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return;
  size_t size = (size_t)bpf_len * sizeof(struct sock_filter);
  ssize_t n = write(fd, bpf_prog, size);
  close(fd);
  if (n != (ssize_t)size || rename(tmp, path)) unlink(tmp);
}

static void compile_seccomp(void) {
  struct spec *s = &spec;
  if (!s->seccomp) return;
  if (s->seccomp_cache && read_cached_bpf(s->seccomp_cache) == 0) return;
  scmp_filter_ctx ctx = seccomp_init(s->seccomp_default);
  if (!ctx) die_code(EXIT_SETUP, 0, "seccomp: cannot create the filter");
  for (size_t i = 0; i < s->nseccomp_arches; i++) {
    uint32_t arch = seccomp_arch_resolve_name(s->seccomp_arches[i]);
    if (!arch) continue;
    int rc = seccomp_arch_add(ctx, arch);
    if (rc && rc != -EEXIST) die_code(EXIT_SETUP, -rc, "seccomp: add architecture %s", s->seccomp_arches[i]);
  }
  for (size_t i = 0; i < s->nseccomp_rules; i++) {
    struct seccomp_rule *r = &s->seccomp_rules[i];
    if (r->action == s->seccomp_default) continue;
    int nr = seccomp_syscall_resolve_name(r->name);
    if (nr == __NR_SCMP_ERROR) continue; /* unknown to this libseccomp: stays denied */
    int rc = seccomp_rule_add_array(ctx, r->action, nr, r->ncond, r->cond);
    if (rc) die_code(EXIT_SETUP, -rc, "seccomp: add rule for %s", r->name);
  }
  int mfd = memfd_create("tsbuild-seccomp", MFD_CLOEXEC);
  if (mfd < 0) die("seccomp: memfd_create");
  int rc = seccomp_export_bpf(ctx, mfd);
  if (rc) die_code(EXIT_SETUP, -rc, "seccomp: compile the filter");
  seccomp_release(ctx);
  off_t size = lseek(mfd, 0, SEEK_END);
  if (size <= 0 || size % (off_t)sizeof(struct sock_filter) || (size_t)size > MAX_BPF_BYTES)
    die_code(EXIT_SETUP, 0, "seccomp: the compiled filter has a bad size (%lld bytes)", (long long)size);
  bpf_prog = malloc((size_t)size);
  if (!bpf_prog) oom();
  if (pread(mfd, bpf_prog, (size_t)size, 0) != size) die("seccomp: read the compiled filter");
  close(mfd);
  bpf_len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
  if (s->seccomp_cache) write_cached_bpf(s->seccomp_cache);
}

static void load_seccomp(void) {
  if (!bpf_prog) return;
  struct sock_fprog prog = {bpf_len, bpf_prog};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) die("seccomp: load the filter");
}

static int last_cap(void) {
  char buf[16];
  if (read_file("/proc/sys/kernel/cap_last_cap", buf, sizeof buf) == 0) return atoi(buf);
  return CAP_LAST_CAP;
}

static void drop_privileges(int lastcap) {
  struct spec *s = &spec;
  uint64_t all = lastcap >= 63 ? ~0ULL : ((1ULL << (lastcap + 1)) - 1);
  if (s->has_caps) {
    for (int c = 0; c <= lastcap; c++) {
      if (s->cap_bounding & (1ULL << c)) continue;
      if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) die("drop capability %d from the bounding set", c);
    }
  }
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)) die("prctl(PR_SET_KEEPCAPS)");
  if (setgroups(s->ngroups, s->groups)) die("setgroups");
  if (setresgid(s->gid, s->gid, s->gid)) die("setgid %u", (unsigned)s->gid);
  if (setresuid(s->uid, s->uid, s->uid)) die("setuid %u", (unsigned)s->uid);
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)) die("prctl(PR_SET_KEEPCAPS)");
  if (s->has_caps) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    /* Never ask for more than this process has (the caller's own bounding
     * set may already lack some capabilities). */
    struct __user_cap_data_struct cur[2];
    memset(cur, 0, sizeof cur);
    if (syscall(SYS_capget, &hdr, cur)) die("capget");
    uint64_t have = ((uint64_t)cur[1].permitted << 32) | cur[0].permitted;
    uint64_t eff = s->cap_effective & all & have, prm = s->cap_permitted & all & have;
    uint64_t inh = s->cap_inheritable & all & have;
    data[0].effective = (uint32_t)eff;
    data[1].effective = (uint32_t)(eff >> 32);
    data[0].permitted = (uint32_t)prm;
    data[1].permitted = (uint32_t)(prm >> 32);
    data[0].inheritable = (uint32_t)inh;
    data[1].inheritable = (uint32_t)(inh >> 32);
    if (syscall(SYS_capset, &hdr, data)) die("capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) die("clear ambient capabilities");
    for (int c = 0; c <= lastcap; c++)
      if ((s->cap_ambient & prm & inh & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0))
        die("raise ambient capability %d", c);
  }
}

static void apply_rlimits(void) {
  for (size_t i = 0; i < spec.nrlimits; i++) {
    struct rlimit rl = {spec.rlimits[i].soft, spec.rlimits[i].hard};
    if (setrlimit(spec.rlimits[i].resource, &rl)) die("setrlimit %d", spec.rlimits[i].resource);
  }
}

/* mkdir -p inside the new root (after pivot_root: plain paths are confined). */
static void ensure_cwd(const char *cwd) {
  struct stat st;
  if (stat(cwd, &st) == 0) return;
  if (errno != ENOENT) return; /* chdir reports it later */
  if (mkdir_all(cwd, 0755)) die("create working directory %s", cwd);
  status_record("created-cwd", cwd);
}

/* ------------------------------------------------------------------------ */
/* exec                                                                      */

static const int forwarded_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static void reset_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, NULL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static const char *env_value(const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < spec.envc; i++)
    if (!strncmp(spec.envp[i], name, n) && spec.envp[i][n] == '=') return spec.envp[i] + n + 1;
  return NULL;
}

__attribute__((noreturn)) static void exec_failed(const char *file, int err) {
  if (err == ENOENT || err == ENOTDIR) die_code(EXIT_NOT_FOUND, err, "exec %s", file);
  die_code(EXIT_CANNOT_RUN, err, "exec %s", file);
}

__attribute__((noreturn)) static void exec_command(void) {
  const char *file = spec.argv[0];
  reset_signals();
  syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (strchr(file, '/')) {
    execve(file, spec.argv, spec.envp);
    exec_failed(file, errno);
  }
  if (!*file) die_code(EXIT_NOT_FOUND, 0, "exec \"\": executable file not found in $PATH");
  const char *path = env_value("PATH");
  if (!path) path = DEFAULT_PATH;
  char candidate[PATH_MAX];
  const char *p = path;
  for (;;) {
    const char *colon = strchr(p, ':');
    size_t dl = colon ? (size_t)(colon - p) : strlen(p);
    if (dl == 0) snprintf(candidate, sizeof candidate, "./%s", file);
    else snprintf(candidate, sizeof candidate, "%.*s/%s", (int)dl, p, file);
    struct stat st;
    if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
      execve(candidate, spec.argv, spec.envp);
      exec_failed(candidate, errno);
    }
    if (!colon) break;
    p = colon + 1;
  }
  die_code(EXIT_NOT_FOUND, 0, "exec \"%s\": executable file not found in $PATH", file);
}

/* ------------------------------------------------------------------------ */
/* Minimal init (PID 1 when the command is not its own init)                 */

static void noop_handler(int sig) { (void)sig; }

__attribute__((noreturn)) static void run_init(pid_t child, const sigset_t *mask) {
  int sfd = signalfd(-1, mask, SFD_CLOEXEC);
  if (sfd < 0) {
    kill(child, SIGKILL);
    die("signalfd");
  }
  for (;;) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    if (n != (ssize_t)sizeof si) {
      if (n < 0 && errno == EINTR) continue;
      kill(child, SIGKILL);
      die("read signalfd");
    }
    if (si.ssi_signo != SIGCHLD) {
      kill(child, (int)si.ssi_signo);
      continue;
    }
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
      if (p != child) continue; /* an orphan reparented to us: reaped */
      if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
      if (WIFSIGNALED(st)) {
        status_number("signal", WTERMSIG(st));
        _exit(128 + WTERMSIG(st));
      }
    }
  }
}

/* ------------------------------------------------------------------------ */
/* The child: PID 1 of the new PID namespace                                 */

static void check_parent_alive(int alive_fd) {
  struct pollfd p = {alive_fd, POLLIN, 0};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) _exit(EXIT_SETUP);
}

__attribute__((noreturn)) static void child_main(int alive_fd, const sigset_t *blocked) {
  struct spec *s = &spec;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) die("prctl(PR_SET_PDEATHSIG)");
  check_parent_alive(alive_fd);
  umask(022); /* mount points and the working directory: 0755 whatever the caller's umask */
  join_cgroups();

  int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
  if (!strcmp(s->netns, "new")) flags |= CLONE_NEWNET;
  if (unshare(flags)) die("unshare namespaces");
  if (strcmp(s->netns, "new") && strcmp(s->netns, "host")) {
    int nfd = open(s->netns, O_RDONLY | O_CLOEXEC);
    if (nfd < 0) die("open network namespace %s", s->netns);
    if (setns(nfd, CLONE_NEWNET)) die("join network namespace %s", s->netns);
    close(nfd);
  }
  if (s->loopback && strcmp(s->netns, "host")) loopback_up();

  setup_rootfs();

  if (s->hostname && sethostname(s->hostname, strlen(s->hostname))) die("sethostname %s", s->hostname);
  apply_rlimits();
  const char *cwd = s->cwd && s->cwd[0] ? s->cwd : "/";
  ensure_cwd(cwd);
  if (s->has_umask) umask(s->umask); /* the command's; ours stays 022 for what we create */

  int lastcap = last_cap();
  if (!s->no_new_privs) load_seccomp(); /* needs CAP_SYS_ADMIN without no_new_privs */
  drop_privileges(lastcap);
  if (s->no_new_privs) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("prctl(PR_SET_NO_NEW_PRIVS)");
    load_seccomp();
  }
  /* a change of uid cleared the parent-death signal: set it again */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) die("prctl(PR_SET_PDEATHSIG)");
  check_parent_alive(alive_fd);
  if (chdir(cwd)) die("chdir to %s", cwd);

  if (!s->init) exec_command();

  /* Stay PID 1: fork the command, forward signals to it, reap everything. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = noop_handler;
  for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++)
    sigaction(forwarded_signals[i], &sa, NULL);
  pid_t pid = fork();
  if (pid < 0) die("fork the command");
  if (pid == 0) exec_command();
  run_init(pid, blocked);
}

/* ------------------------------------------------------------------------ */
/* The outer process                                                         */

struct relay {
  int in, out;
  int in_eof, out_broken, done, is_output;
  size_t len, off;
  char buf[65536];
};

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int is_socket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void relay_step(struct relay *r, short in_ev, short out_ev) {
  if (r->done) return;
  if (in_ev && r->len == 0 && !r->in_eof) {
    ssize_t n = read(r->in, r->buf, sizeof r->buf);
    if (n > 0) {
      r->len = (size_t)n;
      r->off = 0;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      r->in_eof = 1;
    }
  }
  if (r->len > 0 && (out_ev || r->out_broken)) {
    if (r->out_broken) {
      r->len = 0;
    } else {
      ssize_t n = write(r->out, r->buf + r->off, r->len);
      if (n > 0) {
        r->off += (size_t)n;
        r->len -= (size_t)n;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        r->out_broken = 1;
        r->len = 0;
      }
    }
  }
  if (r->in_eof && r->len == 0) {
    r->done = 1;
    close(r->in);
    close(r->out);
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: %s [--spec-fd N] [--status-fd N] [--parent-pid N]\n"
          "Reads a sandbox spec (NUL-separated records, see native/README.md) from\n"
          "the spec fd (default 0) and runs its command in new namespaces.\n",
          PROG);
}

int main(int argc, char **argv) {
  int spec_fd = 0;
  long parent_pid = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--spec-fd") && i + 1 < argc) spec_fd = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--status-fd") && i + 1 < argc) status_fd = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--parent-pid") && i + 1 < argc) parent_pid = atol(argv[++i]);
    else if (!strcmp(argv[i], "--version")) {
      printf("%s spec version %s\n", PROG, SPEC_VERSION);
      return 0;
    } else {
      usage();
      return 2;
    }
  }
  if (status_fd >= 0) fcntl(status_fd, F_SETFD, FD_CLOEXEC);

  /* Die with the caller: nothing of the step outlives it. */
  if (parent_pid > 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) die("prctl(PR_SET_PDEATHSIG)");
    if (getppid() != (pid_t)parent_pid) _exit(EXIT_SETUP);
  }

  read_spec(spec_fd);

  /* Signals: blocked here and read from a signalfd; the child resets them. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++) sigaddset(&mask, forwarded_signals[i]);
  if (sigprocmask(SIG_BLOCK, &mask, NULL)) die("sigprocmask");
  signal(SIGPIPE, SIG_IGN);

  /* Relays: the caller's stdio may be sockets (Node's child pipes are), but
   * programs expect pipes (/dev/stdout must be reopenable). */
  static struct relay relays[3];
  int nrelays = 0;
  int child_fds[3] = {0, 1, 2};
  for (int fd = 0; fd < 3; fd++) {
    if (!is_socket(fd)) continue;
    int p[2];
    if (pipe2(p, O_CLOEXEC)) die("pipe");
    struct relay *r = &relays[nrelays++];
    memset(r, 0, sizeof *r);
    if (fd == 0) {
      r->in = dup(0);
      r->out = p[1];
      child_fds[0] = p[0];
    } else {
      r->in = p[0];
      r->out = dup(fd);
      r->is_output = 1;
      child_fds[fd] = p[1];
    }
    if (r->in < 0 || r->out < 0) die("dup");
    fcntl(r->in, F_SETFD, FD_CLOEXEC);
    fcntl(r->out, F_SETFD, FD_CLOEXEC);
    set_nonblock(r->in);
    set_nonblock(r->out);
  }

  compile_seccomp();
  setup_cgroups();

  int alive[2];
  if (pipe2(alive, O_CLOEXEC)) die("pipe");

  if (unshare(CLONE_NEWPID)) die("unshare PID namespace");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(alive[1]);
    for (int fd = 0; fd < 3; fd++) {
      if (child_fds[fd] == fd) continue;
      if (dup2(child_fds[fd], fd) < 0) die("dup2");
    }
    for (int i = 0; i < nrelays; i++) {
      close(relays[i].in);
      close(relays[i].out);
    }
    child_main(alive[0], &mask);
  }
  close(alive[0]);
  for (int fd = 0; fd < 3; fd++)
    if (child_fds[fd] != fd) close(child_fds[fd]);
  status_number("pid", child);

  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    kill(child, SIGKILL);
    die("signalfd");
  }

  int child_status = -1;
  for (;;) {
    int outputs_open = 0;
    for (int i = 0; i < nrelays; i++)
      if (relays[i].is_output && !relays[i].done) outputs_open = 1;
    if (child_status >= 0 && !outputs_open) break;

    struct pollfd pfds[1 + 2 * 3];
    int idx[3][2];
    int n = 0;
    pfds[n++] = (struct pollfd){sfd, POLLIN, 0};
    for (int i = 0; i < nrelays; i++) {
      struct relay *r = &relays[i];
      idx[i][0] = idx[i][1] = -1;
      if (r->done) continue;
      if (!r->is_output && child_status >= 0) continue; /* nobody reads stdin any more */
      if (r->len == 0 && !r->in_eof) {
        idx[i][0] = n;
        pfds[n++] = (struct pollfd){r->in, POLLIN, 0};
      }
      if (r->len > 0 && !r->out_broken) {
        idx[i][1] = n;
        pfds[n++] = (struct pollfd){r->out, POLLOUT, 0};
      }
    }
    if (poll(pfds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (pfds[0].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD) continue;
        kill(child, (int)si.ssi_signo);
      }
      int st;
      if (child_status < 0 && waitpid(child, &st, WNOHANG) == child) child_status = st;
    }
    for (int i = 0; i < nrelays; i++) {
      short in_ev = idx[i][0] >= 0 ? pfds[idx[i][0]].revents : 0;
      short out_ev = idx[i][1] >= 0 ? pfds[idx[i][1]].revents : 0;
      if (in_ev || out_ev) relay_step(&relays[i], in_ev, out_ev);
    }
  }

  cleanup_cgroups();
  int code;
  if (WIFEXITED(child_status)) {
    code = WEXITSTATUS(child_status);
    status_number("exit", code);
  } else {
    code = 128 + WTERMSIG(child_status);
    status_number("signal", WTERMSIG(child_status));
  }
  return code;
}
