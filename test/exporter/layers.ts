import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { run, setAllMtimes, whiteout } from "./helpers.ts";

export const LONG_DIR = "very/" + "long-directory-name-".repeat(6) + "/" + "deeper-".repeat(20);
export const LONG_FILE = `${LONG_DIR}/${"file-with-a-long-name-".repeat(5)}.txt`;

/**
 * A layer with everything a layer can hold: files (empty, big, odd modes, other owners),
 * directories, symlinks, hard links, long and non-ASCII names, a fifo, a device node,
 * whiteouts (of a file and of a directory) and an opaque directory (etc/apt).
 */
export function makeRichLayer(dir: string, options: { mtime?: number; bigFile?: Buffer } = {}): { opaqueDirs: string[] } {
  const file = (path: string, content: string | Buffer, mode = 0o644) => {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content);
    chmodSync(join(dir, path), mode);
  };
  mkdirSync(dir, { recursive: true });
  file("etc/hosts", "127.0.0.1 localhost\n");
  file("etc/secret", "s3cret\n", 0o600);
  chownSync(join(dir, "etc/secret"), 1000, 1001);
  file("etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n");
  file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o4755);
  file("usr/lib/empty", "");
  file("usr/lib/unreadable", "no one may read this\n", 0o000);
  file("big.bin", options.bigFile ?? randomBytes(3 * 1024 * 1024 + 17));
  file("café/naïve ☃.txt", "unicode\n");
  file(LONG_FILE, "long\n");
  file("high-ids", "owned by a mapped user\n");
  chownSync(join(dir, "high-ids"), 300000, 300001);
  file("hard/one", "linked\n");
  linkSync(join(dir, "hard/one"), join(dir, "hard/two"));
  mkdirSync(join(dir, "private"), { mode: 0o700 });
  chmodSync(join(dir, "private"), 0o700);
  mkdirSync(join(dir, "empty-dir"));
  symlinkSync("usr/lib", join(dir, "lib"));
  symlinkSync("/etc/hosts", join(dir, "absolute-link"));
  symlinkSync("does/not/exist", join(dir, "dangling"));
  run("mkfifo", [join(dir, "fifo")]);
  run("mknod", [join(dir, "null-device"), "c", "1", "3"]);
  chmodSync(join(dir, "null-device"), 0o666);
  whiteout(join(dir, "etc/removed"));
  mkdirSync(join(dir, "var"));
  whiteout(join(dir, "var/old-dir"));
  setAllMtimes(dir, options.mtime ?? 1_700_000_000);
  // A time past 2038 (needs a PAX record).
  utimesSync(join(dir, "usr/lib/empty"), 2_300_000_000, 2_300_000_000);
  return { opaqueDirs: ["etc/apt"] };
}

/**
 * Three layers, bottom first, exercising the overlay rules: a file whiteout, a directory
 * whiteout, an opaque directory, a file replaced by a directory, a file added then deleted,
 * and a file changed. `expected` is the merged tree (paths and contents).
 */
export function makeStack(work: string): { layers: { dir: string; opaqueDirs: string[] }[]; expected: Record<string, string> } {
  const put = (root: string, path: string, content: string) => {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), content);
  };
  const base = join(work, "stack-0");
  put(base, "etc/a", "a\n");
  put(base, "etc/b", "b\n");
  put(base, "etc/apt/sources.list", "old sources\n");
  put(base, "etc/apt/keep.conf", "hidden by the opaque dir\n");
  put(base, "d/x", "x\n");
  put(base, "f", "f was a file\n");
  put(base, "var/old/file", "in a deleted dir\n");
  put(base, "bin/sh", "#!shell\n");
  symlinkSync("etc/a", join(base, "link"));

  const middle = join(work, "stack-1");
  mkdirSync(join(middle, "etc/apt"), { recursive: true });
  whiteout(join(middle, "etc/a"));
  put(middle, "etc/apt/new.list", "new sources\n");
  put(middle, "f/inner", "f is a directory now\n");
  mkdirSync(join(middle, "var"));
  whiteout(join(middle, "var/old"));
  put(middle, "n", "short-lived\n");

  const top = join(work, "stack-2");
  mkdirSync(join(top, "etc"), { recursive: true });
  put(top, "etc/b", "b changed\n");
  whiteout(join(top, "n"));

  for (const dir of [base, middle, top]) setAllMtimes(dir, 1_700_000_000);
  return {
    layers: [
      { dir: base, opaqueDirs: [] },
      { dir: middle, opaqueDirs: ["etc/apt"] },
      { dir: top, opaqueDirs: [] },
    ],
    expected: {
      bin: "dir",
      "bin/sh": "#!shell\n",
      d: "dir",
      "d/x": "x\n",
      etc: "dir",
      "etc/apt": "dir",
      "etc/apt/new.list": "new sources\n",
      "etc/b": "b changed\n",
      f: "dir",
      "f/inner": "f is a directory now\n",
      link: "-> etc/a",
      var: "dir",
    },
  };
}

/** Paths → "dir", "-> target" or the file's content: the form `makeStack`'s `expected` takes. */
export function treeContents(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const path = prefix ? `${prefix}/${name}` : name;
      const st = lstatSync(abs);
      if (st.isDirectory()) {
        out[path] = "dir";
        visit(abs, path);
      } else if (st.isSymbolicLink()) out[path] = `-> ${readlinkSync(abs)}`;
      else if (st.isFile()) out[path] = readFileSync(abs, "utf8");
      else out[path] = "special";
    }
  };
  visit(root, "");
  return out;
}
