import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const repo = join(import.meta.dirname, "..", "..");
export const bin = join(repo, "bin", "tsbuild.js");
export const example = join(repo, "fixtures", "examples", "hello");

/** Runs the built CLI; `root` adds --root. */
export function tsbuild(args: string[], options: { root?: string; input?: string; env?: Record<string, string> } = {}) {
  const rootArgs = options.root ? ["--root", options.root] : [];
  const result = spawnSync(process.execPath, [bin, ...args, ...rootArgs], {
    encoding: "utf8",
    cwd: repo,
    input: options.input,
    env: { ...process.env, ...options.env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export function temp(label: string): string {
  return mkdtempSync(join(tmpdir(), `tsbuild-${label}-`));
}

/** A build context with these files. */
export function project(files: Record<string, string>): string {
  const dir = temp("ctx");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

export function requireBuiltCli(): void {
  if (!existsSync(join(repo, "dist", "tsbuild.js"))) throw new Error("the CLI is not built: run `npm run build` (scripts/setup.sh does) first");
}

/** The offline busybox base image (an OCI layout), made by fixtures/make-base-images.sh when missing. */
export const busyboxLayout = join(repo, "fixtures", "images", "busybox-amd64");

export function requireBusyboxImage(): void {
  if (existsSync(join(busyboxLayout, "index.json"))) return;
  const made = spawnSync("bash", [join(repo, "fixtures", "make-base-images.sh"), "amd64"], { encoding: "utf8" });
  if (made.status !== 0) throw new Error(`cannot make the busybox base image (fixtures/make-base-images.sh): ${made.stderr}`);
}
