/**
 * The build contexts of the RUN-overhead benchmark: a static busybox and Dockerfiles on
 * `FROM scratch` with N distinct exec-form `RUN ["/bin/busybox", "true", "<i>"]` steps, or none.
 */
import { copyFile, mkdir, open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { aptInstall, run } from "../build-cache/run.ts";

/** Debian's busybox-static installs its binary here. */
export const BUSYBOX = "/bin/busybox";

/**
 * Makes sure `/bin/busybox` is Debian's static build (installing busybox-static with apt when
 * it is not), and returns the package version.
 */
export async function ensureStaticBusybox(log: (line: string) => void): Promise<string> {
  if (!(await packageInstalled("busybox-static"))) {
    log("busybox-static is not installed: apt-get install -y busybox-static");
    await aptInstall("busybox-static");
  }
  if (!(await isStaticElf(BUSYBOX))) throw new Error(`${BUSYBOX} is not a static executable (is busybox-static installed?)`);
  const version = await run({ cmd: "dpkg-query", args: ["-W", "-f=${Version}", "busybox-static"] });
  return version.output.trim();
}

async function packageInstalled(name: string): Promise<boolean> {
  const status = await run({ cmd: "dpkg-query", args: ["-W", "-f=${Status}", name] }).catch(() => undefined);
  return status?.code === 0 && status.output.includes("install ok installed");
}

/** An ELF file without a PT_INTERP program header needs no dynamic loader: nothing but itself in FROM scratch. */
async function isStaticElf(path: string): Promise<boolean> {
  const file = await open(path, "r").catch(() => undefined);
  if (file === undefined) return false;
  try {
    const header = Buffer.alloc(64);
    await file.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2 || header[5] !== 1) return false; // 64-bit little-endian ELF
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    await file.read(table, 0, table.length, phoff);
    for (let index = 0; index < phnum; index++) if (table.readUInt32LE(index * phentsize) === 3) return false; // PT_INTERP
    return true;
  } finally {
    await file.close();
  }
}

export interface OverheadContext {
  dir: string;
  steps: number;
  dockerfile: string;
}

/**
 * A context with busybox and a Dockerfile of `steps` distinct exec-form RUN steps (distinct, so
 * that nothing is deduplicated; exec form, so that no shell is needed). `runFlags` go between
 * RUN and the command, e.g. `--network=none`.
 */
export async function writeContext(dir: string, steps: number, runFlags = ""): Promise<OverheadContext> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await copyFile(BUSYBOX, join(dir, "busybox"));
  const lines = ["FROM scratch", "COPY busybox /bin/busybox"];
  for (let index = 1; index <= steps; index++) lines.push(`RUN ${runFlags === "" ? "" : `${runFlags} `}["/bin/busybox", "true", "${index}"]`);
  const dockerfile = `${lines.join("\n")}\n`;
  await writeFile(join(dir, "Dockerfile"), dockerfile);
  return { dir, steps, dockerfile };
}
