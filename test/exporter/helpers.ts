import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pack as createPack } from "tar-stream";
import { afterAll } from "vitest";

const made: string[] = [];

/** A fresh temporary directory, removed after the file's tests. */
export function tempDir(prefix = "tsbuild-exporter-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

export function run(command: string, args: string[], options: { cwd?: string } = {}): string {
  const result = spawnSync(command, args, { encoding: "utf8", ...options });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}

/** A 0:0 character device: how overlayfs records a deletion. */
export function whiteout(path: string): void {
  run("mknod", [path, "c", "0", "0"]);
}

function have(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`]).status === 0;
}

/**
 * Makes sure the external validators are installed (Debian packages of the same names),
 * installing them with apt-get when they are missing; fails saying what to install otherwise.
 */
export function requireTools(tools: readonly string[]): void {
  const missing = tools.filter((tool) => !have(tool));
  if (missing.length === 0) return;
  const hint = `install the Debian packages: apt-get install -y ${missing.join(" ")} (scripts/setup.sh installs everything in scripts/apt-packages.txt)`;
  if (!have("apt-get")) throw new Error(`${missing.join(" and ")} not found, and apt-get is not available to install them: ${hint}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = spawnSync("apt-get", ["update", "-qq"], { encoding: "utf8", env });
  const install = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { encoding: "utf8", env });
  if (update.status !== 0 || install.status !== 0 || missing.some((tool) => !have(tool))) {
    throw new Error(`${missing.join(" and ")} not found and apt-get could not install them (${(install.stderr || update.stderr).trim()}): ${hint}`);
  }
}

export function sha256(data: Uint8Array | string): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

/**
 * Everything observable about a tree, one line per path (sorted): type, mode, owner,
 * mtime in seconds, content hash, link target, device numbers, and which paths share
 * an inode. The root itself is left out.
 */
export function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const inodes = new Map<number, string>();
  const visit = (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const path = prefix ? `${prefix}/${name}` : name;
      const st = lstatSync(abs);
      const common = `mode=${(st.mode & 0o7777).toString(8)} owner=${st.uid}:${st.gid}`;
      const mtime = `mtime=${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isDirectory()) {
        out[path] = `dir ${common} ${mtime}`;
        visit(abs, path);
      } else if (st.isSymbolicLink()) {
        out[path] = `symlink -> ${readlinkSync(abs)} owner=${st.uid}:${st.gid} ${mtime}`;
      } else if (st.isFile()) {
        let linked = "";
        if (st.nlink > 1) {
          const first = inodes.get(st.ino);
          if (first === undefined) inodes.set(st.ino, path);
          else linked = ` same-inode-as=${first}`;
        }
        out[path] = `file ${common} ${mtime} size=${st.size} ${sha256(readFileSync(abs))}${linked}`;
      } else if (st.isCharacterDevice()) {
        // Whiteouts carry no metadata of their own.
        out[path] = st.rdev === 0 ? "whiteout" : `char rdev=${st.rdev} ${common} ${mtime}`;
      } else if (st.isFIFO()) {
        out[path] = `fifo ${common} ${mtime}`;
      } else {
        out[path] = "other";
      }
    }
  };
  visit(root, "");
  return out;
}

/** Paths, types and contents only: what two different extractors must agree on. */
export function contentSnapshot(root: string): Record<string, string> {
  const full = snapshot(root);
  const out: Record<string, string> = {};
  for (const [path, line] of Object.entries(full)) {
    out[path] = line.replace(/ (mode|owner|mtime)=\S+/g, "").replace(/ same-inode-as=\S+/, "");
  }
  return out;
}

export interface RawEntry {
  name: string;
  type?: "file" | "directory" | "symlink" | "link";
  linkname?: string;
  content?: string;
  /** Binary content (wins over `content`). */
  data?: Buffer;
  mode?: number;
}

/** A tar (uncompressed) built entry by entry, exactly as given: for malformed and hostile layers. */
export async function rawTar(path: string, entries: readonly RawEntry[]): Promise<void> {
  const { createWriteStream } = await import("node:fs");
  const { pipeline } = await import("node:stream/promises");
  const { Readable } = await import("node:stream");
  const pack = createPack();
  const written = pipeline(Readable.from(pack, { objectMode: false }), createWriteStream(path));
  for (const entry of entries) {
    const type = entry.type ?? "file";
    const header = { name: entry.name, type, mode: entry.mode ?? (type === "directory" ? 0o755 : 0o644), mtime: new Date(0), linkname: entry.linkname };
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null) => (error ? reject(error) : resolve());
      if (type === "file") pack.entry(header, entry.data ?? Buffer.from(entry.content ?? ""), done);
      else pack.entry(header, done);
    });
  }
  pack.finalize();
  await written;
}

/** Sets the mtime (seconds) of every path under root, and of root, children before parents. */
export function setAllMtimes(root: string, seconds: number): void {
  const paths: string[] = [];
  const visit = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const abs = join(dir, name);
      const st = lstatSync(abs);
      if (st.isDirectory()) visit(abs);
      paths.push(abs);
    }
  };
  visit(root);
  paths.push(root);
  // touch -h: symlinks themselves, devices without opening them.
  for (let i = 0; i < paths.length; i += 200) run("touch", ["-h", "-c", "-d", `@${seconds}`, ...paths.slice(i, i + 200)]);
}
