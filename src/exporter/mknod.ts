import { execFile } from "node:child_process";
import { ExporterError } from "./errors.ts";

/** A node that Node's fs cannot create: a device (a whiteout is a 0:0 character device) or a fifo. */
export interface SpecialNode {
  /** Absolute path. */
  path: string;
  type: "c" | "b" | "p";
  /** Permission bits. */
  mode: number;
  major: number;
  minor: number;
}

/** Keeps each `sh` command line well below ARG_MAX. */
const MAX_BATCH_BYTES = 64 * 1024;

const SCRIPT = `
while [ "$#" -gt 0 ]; do
  if [ "$2" = p ]; then mknod -m "$3" -- "$1" p || exit 1
  else mknod -m "$3" -- "$1" "$2" "$4" "$5" || exit 1
  fi
  shift 5
done`;

/**
 * Creates device nodes and fifos with the `mknod` command (coreutils), many per process.
 * Device nodes need CAP_MKNOD (root).
 */
export async function makeSpecialNodes(nodes: readonly SpecialNode[]): Promise<void> {
  let batch: string[] = [];
  let bytes = 0;
  for (const node of nodes) {
    const args = [node.path, node.type, (node.mode & 0o7777).toString(8).padStart(4, "0"), String(node.major), String(node.minor)];
    const size = args.reduce((sum, arg) => sum + Buffer.byteLength(arg) + 1, 0);
    if (batch.length > 0 && bytes + size > MAX_BATCH_BYTES) {
      await run(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(...args);
    bytes += size;
  }
  if (batch.length > 0) await run(batch);
}

function run(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("sh", ["-c", SCRIPT, "sh", ...args], (error, _stdout, stderr) => {
      if (!error) return resolve();
      const detail = stderr.trim() || error.message;
      const hint =
        process.getuid?.() === 0
          ? "check that the filesystem allows device nodes (not mounted nodev)"
          : "device nodes (overlay whiteouts among them) need root or CAP_MKNOD";
      reject(new ExporterError("ERR_MKNOD", `cannot create device node or fifo: ${detail}; ${hint}`, { cause: error }));
    });
  });
}
