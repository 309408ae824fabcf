/**
 * Push and pull of a 512 MiB image (8 layers of 64 MiB) to and from a registry on loopback
 * (Debian's docker-registry, a fresh storage directory for every transfer), for gzip and for
 * zstd layers, tsbuild side by side with `skopeo copy` in the same run. Both move the same
 * blobs: tsbuild pushes from its image store, skopeo from an OCI layout of the same image;
 * tsbuild pulls into an empty state root, skopeo into an empty OCI layout. Reports the
 * median time of each, the throughput in MiB/s of blob data, and tsbuild / skopeo.
 *
 * Run: npm run bench:registry [-- --rounds N] [--layers N] [--layer-mib N]
 * Results: bench/results/registry-transfer.json. docs/benchmarks.md explains the set-up.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startRegistry, type RegistryServer } from "../test/registry/registry-server.ts";
import { describeMachine } from "./build-cache/report.ts";
import { median, runChecked, type Command } from "./build-cache/run.ts";

const RESULTS_FILE = new URL("./results/registry-transfer.json", import.meta.url);
const TSBUILD = join(import.meta.dirname, "..", "bin", "tsbuild.js");
const COMPRESSIONS = ["gzip", "zstd"] as const;
type Compression = (typeof COMPRESSIONS)[number];

const log = (line: string) => console.log(line);

function options() {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, layers: { type: "string", default: "8" }, "layer-mib": { type: "string", default: "64" } } });
  return { rounds: Number(values.rounds), layers: Number(values.layers), layerMiB: Number(values["layer-mib"]) };
}

const tsbuild = (root: string, ...args: string[]): Command => ({ cmd: process.execPath, args: [TSBUILD, "--root", root, ...args] });
const skopeo = (...args: string[]): Command => ({ cmd: "skopeo", args });

/**
 * A context whose layers compress like real software (about 2:1): each 1 MiB file is half
 * random bytes and half a text drawn from a small vocabulary.
 */
async function writeContext(dir: string, layers: number, layerMiB: number): Promise<void> {
  const words = Array.from({ length: 512 }, () => randomBytes(6).toString("base64url"));
  const lines = ["FROM scratch"];
  for (let layer = 0; layer < layers; layer++) {
    const layerDir = join(dir, `layer${layer}`);
    await mkdir(layerDir, { recursive: true });
    for (let file = 0; file < layerMiB; file++) {
      let text = "";
      while (text.length < 512 * 1024) text += `${words[Math.floor(Math.random() * words.length)]} `;
      await writeFile(join(layerDir, `f${file}`), Buffer.concat([randomBytes(512 * 1024), Buffer.from(text.slice(0, 512 * 1024))]));
    }
    lines.push(`COPY layer${layer} /layer${layer}`);
  }
  await writeFile(join(dir, "Dockerfile"), `${lines.join("\n")}\n`);
}

interface Figures {
  compression: Compression;
  blobMiB: number;
  pushMs: { tsbuild: number; skopeo: number };
  pullMs: { tsbuild: number; skopeo: number };
}

async function timed(command: Command): Promise<number> {
  return (await runChecked(command, { timeoutMs: 20 * 60_000 })).ms;
}

/** Each transfer gets an empty registry, so nothing is skipped as already present. */
async function withRegistry<T>(work: (registry: RegistryServer) => Promise<T>): Promise<T> {
  const registry = await startRegistry();
  try {
    return await work(registry);
  } finally {
    await registry.stop();
  }
}

async function main(): Promise<void> {
  const { rounds, layers, layerMiB } = options();
  const work = await mkdtemp(join(tmpdir(), "tsbuild-bench-registry-"));
  const loadAtStart = loadavg()[0] ?? 0;
  try {
    log(`making a ${layers} × ${layerMiB} MiB context…`);
    const context = join(work, "context");
    await writeContext(context, layers, layerMiB);
    const source = join(work, "source-root");
    const results: Figures[] = [];
    for (const compression of COMPRESSIONS) {
      const name = `bench/${compression}:1`;
      const layout = join(work, `layout-${compression}`);
      await runChecked(tsbuild(source, "build", "--progress", "quiet", "-t", name, "-o", `type=image,compression=${compression},force-compression=true`, "-o", `type=oci-layout,dest=${layout},compression=${compression}`, context), { timeoutMs: 30 * 60_000 });
      const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests: { digest: string }[] };
      const manifest = JSON.parse(await readFile(join(layout, "blobs", "sha256", (index.manifests[0]?.digest ?? "").slice(7)), "utf8")) as { layers: { size: number }[] };
      const blobMiB = manifest.layers.reduce((total, layer) => total + layer.size, 0) / 2 ** 20;
      const push = { tsbuild: [] as number[], skopeo: [] as number[] };
      const pull = { tsbuild: [] as number[], skopeo: [] as number[] };
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first, so neither always gets the warmer page cache.
        const order = round % 2 === 0 ? (["tsbuild", "skopeo"] as const) : (["skopeo", "tsbuild"] as const);
        for (const tool of order) {
          await withRegistry(async (registry) => {
            const remote = `${registry.host}/bench/${compression}:1`;
            if (tool === "tsbuild") {
              await runChecked(tsbuild(source, "tag", name, remote));
              push.tsbuild.push(await timed(tsbuild(source, "push", "--quiet", remote)));
              const root = join(work, `pull-${round}`);
              pull.tsbuild.push(await timed(tsbuild(root, "pull", "--quiet", remote)));
              await rm(root, { recursive: true, force: true });
            } else {
              push.skopeo.push(await timed(skopeo("copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:1`, `docker://${remote}`)));
              const into = join(work, `skopeo-pull-${round}`);
              pull.skopeo.push(await timed(skopeo("copy", "--quiet", "--src-tls-verify=false", `docker://${remote}`, `oci:${into}:x`)));
              await rm(into, { recursive: true, force: true });
            }
          });
        }
        log(`${compression} round ${round + 1}: push tsbuild ${push.tsbuild.at(-1)?.toFixed(0)} ms, skopeo ${push.skopeo.at(-1)?.toFixed(0)} ms; pull tsbuild ${pull.tsbuild.at(-1)?.toFixed(0)} ms, skopeo ${pull.skopeo.at(-1)?.toFixed(0)} ms`);
      }
      results.push({ compression, blobMiB, pushMs: { tsbuild: median(push.tsbuild), skopeo: median(push.skopeo) }, pullMs: { tsbuild: median(pull.tsbuild), skopeo: median(pull.skopeo) } });
    }
    const loadAtEnd = loadavg()[0] ?? 0;
    log("");
    log(`image: ${layers} layers × ${layerMiB} MiB of files; medians of ${rounds} rounds; MiB/s of blob data`);
    const rate = (mib: number, ms: number) => `${(mib / (ms / 1000)).toFixed(0)} MiB/s`;
    for (const figures of results) {
      for (const direction of ["push", "pull"] as const) {
        const ms = direction === "push" ? figures.pushMs : figures.pullMs;
        log(
          `${figures.compression.padEnd(5)} ${direction}: tsbuild ${ms.tsbuild.toFixed(0)} ms (${rate(figures.blobMiB, ms.tsbuild)}), ` +
            `skopeo ${ms.skopeo.toFixed(0)} ms (${rate(figures.blobMiB, ms.skopeo)}), ratio ${(ms.tsbuild / ms.skopeo).toFixed(2)}× (${figures.blobMiB.toFixed(0)} MiB of blobs)`,
        );
      }
    }
    await writeFile(RESULTS_FILE, `${JSON.stringify({ date: new Date().toISOString(), machine: describeMachine(loadAtStart, loadAtEnd), rounds, layers, layerMiB, results }, null, 2)}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
